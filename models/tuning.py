"""Parameter search on the validation split (never on the test period).

Two stages, both scored by NDCG@20 on validation:
1. ALS (factors, regularisation, alpha, iterations) and the event-type weights, by a seeded random
   search scored with plain ALS. The winner is used by the ALS baseline and the served model
   alike, so a gain of the served blend over ALS is the blend's, not better-tuned ALS.
2. The served blend's weights and the half-life of its history signal, by coordinate ascent from
   the configured ones: one model is trained, then each coordinate is moved through a grid while
   the others stay, until a round improves nothing (at most ``rounds``).
Every trial is kept, for the report.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from models.als import ALSParams
from models.artifacts import Artifact
from models.baselines import als
from models.evaluate import Ranker, Split, score
from models.train import TrainConfig, fit

OBJECTIVE = "ndcg@20"
ALS_GRID: dict[str, tuple[float, ...]] = {
    "factors": (32, 64, 128),
    "regularization": (0.01, 0.05, 0.1, 0.5, 1.0),
    "alpha": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
    "iterations": (10, 15, 25),
}
# Weights relative to a product view (1): only the types present in the data are searched.
EVENT_WEIGHT_GRID: dict[str, tuple[float, ...]] = {
    "add_to_cart": (1.0, 2.0, 4.0, 8.0),
    "add_to_wishlist": (1.0, 2.0, 4.0, 8.0),
    "purchase": (1.0, 2.0, 4.0, 8.0, 16.0),
    "recommendation_click": (1.0, 2.0),
}
BLEND_GRID: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
HALF_LIFE = "history_half_life_days"
HALF_LIFE_GRID: tuple[float, ...] = (1, 3, 7, 14, 30, 90, 365)


@dataclass
class Trial:
    params: dict[str, Any]
    score: float
    seconds: float


def _objective(ranker: Ranker, split: Split) -> float:
    return score(ranker, split, (20,))[OBJECTIVE]


def tune_als(split: Split, base: TrainConfig, trials: int, seed: int) -> tuple[TrainConfig, list[Trial]]:
    """The best of ``base`` and ``trials - 1`` seeded random draws, by plain ALS on ``split``."""
    present = {r.event_type for r in split.train}
    rnd = random.Random(seed)
    candidates = [base]
    for _ in range(max(trials - 1, 0)):
        als_params = ALSParams(**{name: rnd.choice(values) for name, values in ALS_GRID.items()},
                               random_state=base.als.random_state)
        weights = dict(base.weights)
        for event_type, values in EVENT_WEIGHT_GRID.items():
            if event_type in present and weights.get(event_type, 0.0) > 0:
                weights[event_type] = rnd.choice(values)
        candidates.append(replace(base, als=als_params, weights=weights))
    results: list[Trial] = []
    best, best_score = base, float("-inf")
    for config in candidates:
        started = time.perf_counter()
        value = _objective(als(config)(split), split)
        results.append(Trial({"als": asdict(config.als), "event_weights": dict(config.weights)}, value,
                             round(time.perf_counter() - started, 2)))
        if value > best_score:
            best, best_score = config, value
    return best, results


def tune_blend(split: Split, config: TrainConfig, serve: Callable[[Artifact], Ranker], signals: Sequence[str],
               rounds: int = 3) -> tuple[TrainConfig, list[Trial]]:
    """Coordinate ascent over the served blend (weights and history half-life) on ``split``."""
    artifact = fit(split.matrix(config), config)
    results: list[Trial] = []
    seen: dict[tuple[tuple[str, float], ...], float] = {}

    def evaluate(point: dict[str, float]) -> float:
        key = tuple(sorted(point.items()))
        if key not in seen:
            started = time.perf_counter()
            artifact.meta["params"]["blend"] = {s: point[s] for s in signals}
            artifact.user_recent = split.matrix(with_half_life(point[HALF_LIFE])).user_recent
            seen[key] = _objective(serve(artifact), split)
            results.append(Trial(dict(point), seen[key], round(time.perf_counter() - started, 2)))
        return seen[key]

    def with_half_life(days: float) -> TrainConfig:
        return replace(config, history_half_life_s=days * 86400)

    grids = {**{s: BLEND_GRID for s in signals}, HALF_LIFE: HALF_LIFE_GRID}
    best = {**{s: float(config.blend.get(s, 0.0)) for s in signals}, HALF_LIFE: config.history_half_life_s / 86400}
    best_score = evaluate(best)
    for _ in range(rounds):
        improved = False
        for name, grid in grids.items():
            for value in grid:
                candidate = {**best, name: value}
                if not any(candidate[s] > 0 for s in signals):
                    continue
                candidate_score = evaluate(candidate)
                if candidate_score > best_score:
                    best, best_score, improved = candidate, candidate_score, True
        if not improved:
            break
    return replace(with_half_life(best[HALF_LIFE]), blend={s: best[s] for s in signals if best[s] > 0}), results
