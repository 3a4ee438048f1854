"""The engine's side of training: the recipe models/ trains from the settings, and the promotion
gate run with the served recommender (engine.training.offline), which models/ cannot import.

`vitrine train` and the benchmarks that train a model both take their recipe from here, so that
what they train is what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.catalog import EMPTY
from engine.training.offline import OfflineRanker
from engine.runtime import profile_config
from engine.settings import BLEND_SIGNALS, Settings
from models.als import ALSParams
from models.artifacts import Artifact
from models.autotune import shape, tune_recipe
from models.evaluate import Protocol, Ranker, Split, served
from models.rows import Interaction
from models.lifecycle import Decision, holdout_cutoff, train_and_gate
from models.train import TrainConfig
from models.tuning import TUNABLE


def train_config(settings: Settings) -> TrainConfig:
    """The recipe as configured; the exclusion flags only where set explicitly (else serving's
    settings decide, or `vitrine train` tunes them)."""
    pinned = settings.model_fields_set
    return TrainConfig(
        weights=settings.event_weights,
        als=ALSParams(factors=settings.als_factors, regularization=settings.als_regularization,
                      alpha=settings.als_alpha, iterations=settings.als_iterations),
        neighbours=settings.neighbours,
        similarity=settings.neighbour_similarity,
        popularity_half_life_s=settings.popularity_half_life_s,
        history_half_life_s=settings.history_half_life_s,
        blend=settings.blend,
        session_gap_s=settings.session_timeout_s,
        exclude_seen=settings.exclude_seen if "exclude_seen" in pinned else None,
        exclude_purchased=settings.exclude_purchased if "exclude_purchased" in pinned else None,
    )


def served_ranker(settings: Settings) -> Callable[[Artifact], Ranker]:
    """The served ranker as training scores it: no catalogue (training does not need Redis), so
    every trained item counts as available, for every model alike."""
    return OfflineRanker(EMPTY, profile_config(settings), exclude_seen=settings.exclude_seen,
                         exclude_purchased=settings.exclude_purchased)


def trained_recipe(rows: Sequence[Interaction], settings: Settings, trials: int | None = None,
                   progress: bool = True) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The recipe `vitrine train` trains from ``rows`` (sorted by time), and how it was chosen:
    tuned (models.autotune) on the data before the promotion gate's hold-out, so that the gate
    still compares models on data neither was tuned on. Settings set explicitly stay as set."""
    base = train_config(settings)
    trials = settings.tune_trials if trials is None else trials
    if trials == 0 or not rows:
        return base, None
    cutoff = holdout_cutoff(list(rows), settings.promote_holdout)
    before = [r for r in rows if r.ts < cutoff]
    pinned = sorted(settings.model_fields_set & set(TUNABLE))
    tuned = tune_recipe(before, base, served_ranker(settings), BLEND_SIGNALS, pinned=pinned, trials=trials,
                        progress=progress)
    return tuned.config, tuned.record


def gated_train(rows: Iterable[Interaction], settings: Settings, trials: int | None = None,
                progress: bool = True, force: bool = False) -> tuple[Artifact, Decision]:
    """Tune the recipe, train it, score it against the served model on the held-out tail (per
    person, or per session step for a log of one-session visitors, as the tuning does), promote it
    if not worse (or if ``force``)."""
    rows = sorted(rows, key=lambda r: r.ts)
    config, tuning = trained_recipe(rows, settings, trials, progress)
    protocol = Protocol(test_span_s=0, ks=(10, 20), session_gap_s=config.session_gap_s,
                        sessions=bool(rows) and shape(rows, config.session_gap_s) == "sessions",
                        exclude_seen=settings.exclude_seen if config.exclude_seen is None else config.exclude_seen,
                        exclude_purchased=settings.exclude_purchased if config.exclude_purchased is None
                        else config.exclude_purchased)
    return train_and_gate(rows, config, settings.models_dir, served_ranker(settings), protocol=protocol,
                          holdout=settings.promote_holdout, tolerance=settings.promote_tolerance,
                          keep=settings.models_keep, tuning=tuning, force=force)


class AfterTrain:
    """`vitrine evaluate`'s "after train" method: what `vitrine train` would serve if run on the
    split's training rows (tuned exactly as it tunes, with the same settings), as the API serves
    it. What it chose is kept for the report."""

    def __init__(self, settings: Settings, catalogue: Catalogue, trials: int | None, progress: bool) -> None:
        self.settings, self.trials, self.progress = settings, trials, progress
        self.serve = OfflineRanker(catalogue, profile_config(settings), exclude_seen=settings.exclude_seen,
                                   exclude_purchased=settings.exclude_purchased)
        self.chosen: dict[str, Any] | None = None

    def __call__(self, split: Split) -> Ranker:
        config, tuning = trained_recipe(sorted(split.train, key=lambda r: r.ts), self.settings, self.trials,
                                        self.progress)
        self.chosen = {"params": config.params(), "tuning": tuning}
        return served(config, self.serve)(split)
