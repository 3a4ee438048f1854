"""Session-based baselines, fitted on the same training rows as the others: V-SKNN (models.sknn)
and sequential rules (models.seqrules), each scoring from the query's most recent items alone (at
most 10 for V-SKNN), with the parameters their authors' session-rec framework uses (no popularity
fill when they run out of votes)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models import seqrules, sknn
from models.evaluate import Method, Query, Ranker, Split
from models.seqrules import RuleParams
from models.sessions import recent_distinct
from models.sknn import SknnParams
from models.train import TrainConfig


def query_session(q: Query, index: Mapping[str, int], weights: Mapping[str, float], limit: int) -> np.ndarray:
    """The query's distinct trained items, most recent first, at most ``limit``."""
    steps = [index[r.item_id] for r in q.history if weights.get(r.event_type, 0.0) > 0 and r.item_id in index]
    return np.asarray(recent_distinct(steps, limit), dtype=np.int32)


def _top(item_ids: list[str], items: np.ndarray, values: np.ndarray, q: Query) -> list[str]:
    out: list[str] = []
    for j in np.argsort(-values, kind="stable"):
        item = item_ids[items[j]]
        if values[j] > 0 and item not in q.exclude:
            out.append(item)
            if len(out) == q.k:
                break
    return out


def vsknn(config: TrainConfig, params: SknnParams = sknn.PAPER) -> Method:
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        assert m.sessions is not None
        index = sknn.build_index(m.sessions, len(m.item_ids), params.per_item, params.session_items)
        item_index = m.item_index

        def rank(q: Query) -> list[str]:
            session = query_session(q, item_index, config.weights, params.last_n)
            items, votes = sknn.scores(index, session, len(m.item_ids), params, q.now)
            return _top(m.item_ids, items, votes, q)
        return rank
    return method


def sequential_rules(config: TrainConfig, params: RuleParams = RuleParams(keep=20)) -> Method:
    """SR as published: rules of the last item only, ``steps`` 10, the 20 best rules per item."""
    def method(split: Split) -> Ranker:
        m = split.matrix(config)
        assert m.sessions is not None
        index, score = seqrules.build_rules(m.sessions, len(m.item_ids), params)
        item_index = m.item_index

        def rank(q: Query) -> list[str]:
            session = query_session(q, item_index, config.weights, params.last_n)
            items, weights = seqrules.scores(index, score, session, params.last_n)
            return _top(m.item_ids, items, weights, q)
        return rank
    return method
