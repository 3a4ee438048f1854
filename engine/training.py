"""The engine's side of training: the recipe models/ trains from the settings, and the promotion
gate run with the served recommender (engine.ranking.offline), which models/ cannot import.

`vitrine train` and the benchmarks that train a model both take their recipe from here, so that
what they train is what is served.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.catalog import EMPTY
from engine.ranking.offline import OfflineRanker
from engine.runtime import profile_config
from engine.settings import Settings
from models.als import ALSParams
from models.artifacts import Artifact
from models.evaluate import Protocol
from models.interactions import Interaction
from models.lifecycle import Decision, train_and_gate
from models.train import TrainConfig


def train_config(settings: Settings) -> TrainConfig:
    return TrainConfig(
        weights=settings.event_weights,
        als=ALSParams(factors=settings.als_factors, regularization=settings.als_regularization,
                      alpha=settings.als_alpha, iterations=settings.als_iterations),
        neighbours=settings.neighbours,
        popularity_half_life_s=settings.popularity_half_life_s,
        history_half_life_s=settings.history_half_life_s,
        blend=settings.blend,
    )


def gated_train(rows: Iterable[Interaction], settings: Settings) -> tuple[Artifact, Decision]:
    """Train, score against the served model on the held-out tail, promote if not worse.

    The gate has no catalogue (training does not need Redis): every trained item counts as
    available, for both models alike."""
    protocol = Protocol(test_span_s=0, ks=(10, 20), exclude_seen=settings.exclude_seen,
                        exclude_purchased=settings.exclude_purchased)
    serve = OfflineRanker(EMPTY, profile_config(settings), exclude_seen=settings.exclude_seen,
                          exclude_purchased=settings.exclude_purchased)
    return train_and_gate(rows, train_config(settings), settings.models_dir, serve, protocol=protocol,
                          holdout=settings.promote_holdout, tolerance=settings.promote_tolerance,
                          keep=settings.models_keep)
