"""Parameter search on a validation split (never on the test period).

Three stages, all scored by NDCG@20 on the validation split:
1. ALS (factors, regularisation, alpha, iterations) and the event-type weights, by a seeded random
   search scored with plain ALS. The winner is used by the ALS baseline and the served model
   alike, so a gain of the served blend over ALS is the blend's, not better-tuned ALS.
2. Whether for-you leaves out what the person already saw or bought (tried with the configured
   blend, and again with the tuned one).
3. The served blend's weights, the half-life of its history signal and whether its neighbours
   signal reads cosine or BM25 item-item neighbours, by coordinate ascent from
   the configured ones: one model is trained, then each coordinate is moved through a grid while
   the others stay, until a round improves nothing (at most ``rounds``: one per 10 ALS trials,
   up to 3).
A setting the shop pinned (named in ``pinned``, by its ``VITRINE_`` setting name) keeps its value.
Every trial is kept, for the report and the model's meta.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from models.als import ALSParams
from models.artifacts import Artifact
from models.baselines import als
from models.evaluate import Ranker, Split, score
from models.neighbours import SIMILARITIES, top_neighbours
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
SIMILARITY = "neighbours_similarity"
# The session-neighbours signal's own parameters (models.sknn.SknnParams), searched with its weight
# when the blend may use it: how many neighbour sessions vote, how many of the visit's latest items
# find them, and VMIS-kNN's idf weighting of rare items. The index is not rebuilt (per_item stays).
SKNN_GRID: dict[str, tuple[float, ...]] = {"sknn_k": (20, 50, 100), "sknn_last_n": (3, 5, 10, 20),
                                           "sknn_idf_weight": (0.0, 0.5, 1.0)}
# The settings (engine.settings names) each search moves; a pinned one stays as configured.
TUNABLE: tuple[str, ...] = ("als_factors", "als_regularization", "als_alpha", "als_iterations", "event_weights",
                            "blend", "history_half_life_s", "neighbour_similarity", "exclude_seen",
                            "exclude_purchased")
Tick = Callable[[], None]


@dataclass
class Trial:
    params: dict[str, Any]
    score: float
    seconds: float


def _objective(ranker: Ranker, split: Split) -> float:
    return score(ranker, split, (20,))[OBJECTIVE]


def _none() -> None:
    return None


def tune_als(split: Split, base: TrainConfig, trials: int, seed: int, pinned: Collection[str] = (),
             tick: Tick = _none) -> tuple[TrainConfig, list[Trial]]:
    """The best of ``base`` and ``trials - 1`` seeded random draws, by plain ALS on ``split``."""
    present = {r.event_type for r in split.train}
    rnd = random.Random(seed)
    candidates = [base]
    for _ in range(max(trials - 1, 0)):
        drawn = {name: rnd.choice(values) for name, values in ALS_GRID.items()}
        als_params = ALSParams(**{name: getattr(base.als, name) if f"als_{name}" in pinned else value
                                  for name, value in drawn.items()}, random_state=base.als.random_state)
        weights = dict(base.weights)
        for event_type, values in EVENT_WEIGHT_GRID.items():
            value = rnd.choice(values)
            if event_type in present and weights.get(event_type, 0.0) > 0 and "event_weights" not in pinned:
                weights[event_type] = value
        candidate = replace(base, als=als_params, weights=weights)
        if candidate not in candidates:
            candidates.append(candidate)
    results: list[Trial] = []
    best, best_score = base, float("-inf")
    for config in candidates:
        started = time.perf_counter()
        value = _objective(als(config)(split), split)
        results.append(Trial({"als": asdict(config.als), "event_weights": dict(config.weights)}, value,
                             round(time.perf_counter() - started, 2)))
        tick()
        if value > best_score:
            best, best_score = config, value
    return best, results


def tune_exclusions(split: Split, config: TrainConfig, serve: Callable[[Artifact], Ranker],
                    pinned: Collection[str] = (), tick: Tick = _none,
                    artifact: Artifact | None = None) -> tuple[TrainConfig, list[Trial]]:
    """The best of leaving out (or not) what the person saw and what they bought, for what is not
    pinned (a pinned flag keeps ``config``'s value, which must then be set)."""
    artifact = artifact or fit(split.matrix(config), config)
    choices = {flag: [getattr(config, flag)] if flag in pinned else [False, True]
               for flag in ("exclude_seen", "exclude_purchased")}
    results: list[Trial] = []
    best, best_score = config, float("-inf")
    for seen, bought in itertools.product(choices["exclude_seen"], choices["exclude_purchased"]):
        candidate = replace(config, exclude_seen=seen, exclude_purchased=bought)
        started = time.perf_counter()
        artifact.meta["params"] = candidate.params()
        value = _objective(serve(artifact), split)
        results.append(Trial({"exclude_seen": seen, "exclude_purchased": bought}, value,
                             round(time.perf_counter() - started, 2)))
        tick()
        if value > best_score:
            best, best_score = candidate, value
    return best, results


def blend_steps(signals: Sequence[str], rounds: int) -> int:
    """The most evaluations ``tune_blend`` makes (for a progress bar)."""
    sknn = sum(map(len, SKNN_GRID.values())) if "session_neighbours" in signals else 0
    return 1 + rounds * (len(signals) * len(BLEND_GRID) + len(HALF_LIFE_GRID) + len(SIMILARITIES) + sknn)


def tune_blend(split: Split, config: TrainConfig, serve: Callable[[Artifact], Ranker], signals: Sequence[str],
               rounds: int = 3, pinned: Collection[str] = (), tick: Tick = _none) -> tuple[TrainConfig, list[Trial]]:
    """Coordinate ascent over the served blend (weights, history half-life, the similarity of the
    neighbours signal's table, the session-neighbours parameters) on ``split``."""
    artifact = fit(split.matrix(config), config)
    tables = {config.similarity: (artifact.similar_index, artifact.similar_score)}
    results: list[Trial] = []
    seen: dict[tuple[tuple[str, Any], ...], float] = {}

    def evaluate(point: dict[str, Any]) -> float:
        key = tuple(sorted(point.items()))
        if key not in seen:
            started = time.perf_counter()
            artifact.meta["params"] = recipe(point).params()
            artifact.user_recent = split.matrix(recipe(point)).user_recent
            if point[SIMILARITY] not in tables:
                tables[point[SIMILARITY]] = top_neighbours(split.matrix(config).user_items, config.neighbours,
                                                           point[SIMILARITY])
            artifact.similar_index, artifact.similar_score = tables[point[SIMILARITY]]
            seen[key] = _objective(serve(artifact), split)
            results.append(Trial(dict(point), seen[key], round(time.perf_counter() - started, 2)))
        tick()
        return seen[key]

    def recipe(point: dict[str, Any]) -> TrainConfig:
        return replace(config, history_half_life_s=point[HALF_LIFE] * 86400, similarity=point[SIMILARITY],
                       blend={s: point[s] for s in signals if point[s] > 0},
                       sknn=replace(config.sknn, **{name.removeprefix("sknn_"): type(getattr(
                           config.sknn, name.removeprefix("sknn_")))(point[name]) for name in sknn_grid}))

    sknn_grid = SKNN_GRID if "session_neighbours" in signals and "blend" not in pinned else {}
    grids: dict[str, Sequence[Any]] = {
        **({} if "blend" in pinned else {s: BLEND_GRID for s in signals}),
        **({} if "neighbour_similarity" in pinned else {SIMILARITY: SIMILARITIES}),
        **({} if "history_half_life_s" in pinned else {HALF_LIFE: HALF_LIFE_GRID}),
        **sknn_grid}
    best = {**{s: float(config.blend.get(s, 0.0)) for s in signals}, HALF_LIFE: config.history_half_life_s / 86400,
            SIMILARITY: config.similarity,
            **{name: getattr(config.sknn, name.removeprefix("sknn_")) for name in sknn_grid}}
    best_score = evaluate(best)
    for _ in range(rounds if grids else 0):
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
    return recipe(best), results


def blend_rounds(trials: int) -> int:
    """The budget of ``trials`` also bounds the blend search: a round per 10 trials, 1 to 3."""
    return max(1, min(3, (trials + 9) // 10))


def tune(split: Split, base: TrainConfig, serve: Callable[[Artifact], Ranker], signals: Sequence[str], *,
         trials: int, seed: int, pinned: Collection[str] = (),
         tick: Tick = _none) -> tuple[TrainConfig, float, dict[str, list[Trial]]]:
    """All three stages: (the tuned recipe, its score, the trials of each stage). ``base`` must set
    the exclusion flags that are pinned."""
    rounds = blend_rounds(trials)
    tuned, als_trials = tune_als(split, base, trials, seed, pinned, tick)
    tuned, exclusion_trials = tune_exclusions(split, tuned, serve, pinned, tick)
    tuned, blend_trials = tune_blend(split, tuned, serve, signals, rounds, pinned, tick)
    tuned, again = tune_exclusions(split, tuned, serve, pinned, tick)
    return tuned, max(t.score for t in again), {"als": als_trials, "exclusions": exclusion_trials + again,
                                                "blend": blend_trials}


def steps(signals: Sequence[str], trials: int) -> int:
    """The most evaluations ``tune`` makes."""
    return trials + 8 + blend_steps(signals, blend_rounds(trials))
