"""The baselines the served recommender must beat, fitted on the same training rows.

- popularity: items by the number of people who used them;
- trending: the same over the last ``window_s`` before the cut-off only;
- item-kNN: implicit's item-item cosine or BM25 over people, scored from the person's whole row;
- ALS: implicit ALS, the person's trained factors against every item (same parameters as the
  served model's, so the difference is the blend, not the tuning);
- V-SKNN and SR: session-based nearest neighbours and sequential rules (models.session_baselines),
  from the person's most recent items.
All rank the full catalogue minus the query's exclusions, like the served one.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from scipy.sparse import csr_matrix


from models.als import train_als
from models.evaluate import Method, Query, Ranker, Split
from models.interactions import InteractionMatrix
from models.session_baselines import sequential_rules, vsknn
from models.train import TrainConfig


def _ordered(item_ids: list[str], scores: np.ndarray) -> Ranker:
    """The same list for everyone, minus each person's exclusions."""
    order = [item_ids[i] for i in np.argsort(-scores, kind="stable") if scores[i] > 0]

    def rank(q: Query) -> list[str]:
        out = []
        for item in order:
            if item not in q.exclude:
                out.append(item)
                if len(out) == q.k:
                    break
        return out
    return rank


def popularity(config: TrainConfig) -> Method:
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        return _ordered(m.item_ids, np.asarray((m.user_items > 0).sum(axis=0)).ravel().astype(np.float64))
    return method


def trending(config: TrainConfig, window_s: float) -> Method:
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        index = m.item_index
        recent = {(r.visitor_id, r.item_id) for r in split.train
                  if r.ts >= split.cutoff - window_s and config.weights.get(r.event_type, 0.0) > 0}
        counts = np.bincount([index[item] for _, item in recent], minlength=len(m.item_ids))
        return _ordered(m.item_ids, counts.astype(np.float64))
    return method


def _personal(m: InteractionMatrix, weights: Mapping[str, float], recommend: Any) -> Ranker:
    """A ranker from an implicit model's ``recommend`` over the person's training row; when the
    query has events after the cut-off (or the person is new), over a row built from its history
    (for ALS, folded in: ``recalculate_user``)."""
    users = {u: i for i, u in enumerate(m.user_ids)}
    index = m.item_index

    def rank(q: Query) -> list[str]:
        row = users.get(q.person)
        known = row is not None and not q.revealed
        user_items = m.user_items[row] if known else _history_row(q, index, weights)
        blocked = np.fromiter((index[i] for i in q.exclude if i in index), dtype=np.int32)
        n = min(q.k, len(m.item_ids) - len(blocked))
        if n <= 0 or user_items.nnz == 0:
            return []
        ids, scores = recommend(row if known else 0, user_items, N=n, filter_already_liked_items=False,
                                filter_items=blocked if len(blocked) else None, recalculate_user=not known)
        return [m.item_ids[i] for i, s in zip(ids, scores) if i >= 0 and np.isfinite(s)]
    return rank


def _history_row(q: Query, index: dict[str, int], weights: Mapping[str, float]) -> csr_matrix:
    values: dict[int, float] = defaultdict(float)
    for r in q.history:
        if weights.get(r.event_type, 0.0) > 0 and r.item_id in index:
            values[index[r.item_id]] += weights[r.event_type]
    cols = np.fromiter(values, dtype=np.int32, count=len(values))
    data = np.fromiter(values.values(), dtype=np.float32, count=len(values))
    return csr_matrix((data, cols, np.array([0, len(cols)])), shape=(1, len(index)))


def item_knn(config: TrainConfig, kind: str = "bm25", neighbours: int = 100) -> Method:
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        model = BM25Recommender(K=neighbours, num_threads=0) if kind == "bm25" else \
            CosineRecommender(K=neighbours, num_threads=0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(csr_matrix(m.user_items, dtype=np.float64), show_progress=False)
        return _personal(m, config.weights, model.recommend)
    return method


def als(config: TrainConfig) -> Method:
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        model = train_als(m.user_items, config.als)
        return _personal(m, config.weights, _folding(model, config.als.regularization))
    return method


def _folding(model: Any, regularization: float) -> Any:
    """implicit's ``recommend``, with the factors of a new row solved here: its
    ``recalculate_user`` forms YᵀY again on every call, the whole cost of a query on a large
    catalogue. The same least-squares step (confidence = alpha x weight, preference 1)."""
    factors = np.asarray(model.item_factors, dtype=np.float64)
    gram = factors.T @ factors + regularization * np.eye(factors.shape[1])

    def recommend(row: int, user_items: csr_matrix, *, N: int, filter_items: np.ndarray | None = None,
                  recalculate_user: bool, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        if not recalculate_user:
            return model.recommend(row, user_items, N=N, filter_items=filter_items, **kwargs)
        y = factors[user_items.indices]
        confidence = model.alpha * user_items.data.astype(np.float64)
        vector = np.linalg.solve(gram + y.T @ ((confidence - 1.0)[:, None] * y), y.T @ confidence)
        scores = factors @ vector
        if filter_items is not None:
            scores[filter_items] = -np.inf
        top = np.argpartition(-scores, N - 1)[:N] if N < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]
    return recommend


def baselines(config: TrainConfig, trending_window_s: float) -> dict[str, Method]:
    return {
        "popularity": popularity(config),
        "trending": trending(config, trending_window_s),
        "item-kNN cosine": item_knn(config, "cosine"),
        "item-kNN BM25": item_knn(config, "bm25"),
        "ALS": als(config),
        "V-SKNN": vsknn(config),
        "SR": sequential_rules(config),
    }
