"""Train every model the engine serves from one interaction history, as one artifact."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models import artifacts
from models.als import ALSParams, train_als
from models.artifacts import Artifact
from models.interactions import InteractionMatrix, build_matrix
from models.rows import Interaction
from models.neighbours import top_neighbours
from models.repeats import repeat_curve
from models.seqrules import RuleParams, build_rules
from models.sessions import SESSION_GAP_S
from models.sknn import SknnParams, build_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    weights: Mapping[str, float]
    als: ALSParams = ALSParams()
    neighbours: int = 50
    similarity: str = "cosine"  # of the "similar" table the blend's neighbours signal reads (models.neighbours)
    popularity_half_life_s: float = 30 * 86400
    history_half_life_s: float = 30 * 86400
    blend: Mapping[str, float] = field(default_factory=lambda: {"als": 1.0})  # see engine.ranking.blend
    session_gap_s: float = SESSION_GAP_S
    sknn: SknnParams = SknnParams()  # the session_neighbours signal (models.sknn)
    rules: RuleParams = RuleParams()  # the sequence signal (models.seqrules)
    # What for-you leaves out (None: the serving settings decide); ``vitrine train`` tunes them.
    exclude_seen: bool | None = None
    exclude_purchased: bool | None = None

    def matrix(self, rows: Iterable[Interaction]) -> InteractionMatrix:
        return build_matrix(rows, self.weights, popularity_half_life_s=self.popularity_half_life_s,
                            history_half_life_s=self.history_half_life_s, session_gap_s=self.session_gap_s)

    def params(self) -> dict[str, object]:
        """Everything that defines the model, as recorded in the artifact's meta."""
        return {
            "als": self.als.as_dict(),
            "event_weights": dict(self.weights),
            "neighbours": self.neighbours,
            "similarity": self.similarity,
            "popularity_half_life_s": self.popularity_half_life_s,
            "history_half_life_s": self.history_half_life_s,
            "blend": dict(self.blend),
            "session_gap_s": self.session_gap_s,
            "sknn": asdict(self.sknn),
            "rules": asdict(self.rules),
            "exclude_seen": self.exclude_seen,
            "exclude_purchased": self.exclude_purchased,
        }


def fit(matrix: InteractionMatrix, config: TrainConfig) -> Artifact:
    started = time.perf_counter()
    als = train_als(matrix.user_items, config.als)
    similar_index, similar_score = top_neighbours(matrix.user_items, config.neighbours, config.similarity)
    baskets = matrix.basket_items if matrix.basket_items.nnz else matrix.user_items
    complement_index, complement_score = top_neighbours(baskets, config.neighbours)
    n_items = len(matrix.item_ids)
    session_index = sequence_index = sequence_score = None
    curve: list[float] = []
    if matrix.sessions is not None:
        curve = [round(float(v), 5) for v in repeat_curve(matrix.sessions)]
        session_index = build_index(matrix.sessions, n_items, config.sknn.per_item, config.sknn.session_items)
        sequence_index, sequence_score = build_rules(matrix.sessions, n_items, config.rules)
    return Artifact(
        item_ids=matrix.item_ids,
        user_ids=matrix.user_ids,
        item_factors=np.asarray(als.item_factors, dtype=np.float32),
        user_items=matrix.user_items,
        similar_index=similar_index,
        similar_score=similar_score,
        complement_index=complement_index,
        complement_score=complement_score,
        popularity=matrix.item_weight,
        user_recent=matrix.user_recent,
        session_index=session_index,
        sequence_index=sequence_index,
        sequence_score=sequence_score,
        meta={
            "data": {
                "first_event": matrix.first_ts,
                "last_event": matrix.last_ts,
                "events": matrix.n_events,
                "users": len(matrix.user_ids),
                "items": len(matrix.item_ids),
                "baskets": int(matrix.basket_items.shape[0]),
                "sessions": len(matrix.sessions) if matrix.sessions is not None else 0,
            },
            "params": config.params(),
            "train_seconds": round(time.perf_counter() - started, 2),
            "bytes": {
                "session_index": session_index.nbytes if session_index is not None else 0,
                "sequence_rules": int(sequence_index.nbytes + sequence_score.nbytes) if sequence_index is not None else 0,
            },
            "repeat_curve": curve,  # models.repeats: the blend's repeat signal
        },
    )


def train_from_rows(rows: Iterable[Interaction], config: TrainConfig, models_dir: Path,
                    *, promote: bool = True) -> Artifact:
    read_at = time.time()  # every event accepted before this is in what is read now
    matrix = config.matrix(rows)
    if not matrix.item_ids or not matrix.user_ids:
        raise ValueError("no interactions to train on: import or send some events first")
    artifact = fit(matrix, config)
    artifact.meta["data"]["read_at"] = read_at
    path = artifacts.save(artifact, models_dir)
    log.info("trained model %s: %s", artifact.version, artifact.meta["data"])
    if promote:
        artifacts.promote(models_dir, path.name)
    return artifact
