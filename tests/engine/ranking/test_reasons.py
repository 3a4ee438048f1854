"""Each for-you item's reason names the blend signal that added most to its score (crafted models,
pure functions: engine.ranking.reasons through engine.ranking.scenarios.for_you)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from engine.catalog import EMPTY
from engine.profiles import VisitorProfile
from engine.ranking.model import ServedModel
from engine.ranking.reasons import Signals, contributions, dominant
from engine.ranking.scenarios import Context, for_you
from models.artifacts import Artifact

ITEMS = ["A", "B", "C", "D", "E", "F"]
# A and B are what the person viewed; C is co-visited with A, F with B; D sells most; E's factors
# lie along B's.
FACTORS = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.5, 0.5], [0.05, 1], [0.3, 0.3]], dtype=np.float32)
NEIGHBOUR_INDEX = np.array([[2, -1], [5, -1], [0, -1], [-1, -1], [-1, -1], [1, -1]], dtype=np.int32)
NEIGHBOUR_SCORE = np.array([[1, 0], [0.4, 0], [1, 0], [0, 0], [0, 0], [0.4, 0]], dtype=np.float32)
POPULARITY = np.array([5, 5, 1, 100, 1, 2], dtype=np.float32)


def model(blend: dict[str, float]) -> ServedModel:
    empty = csr_matrix((0, len(ITEMS)), dtype=np.float32)
    return ServedModel(Artifact(
        item_ids=ITEMS, user_ids=[], item_factors=FACTORS, user_items=empty, similar_index=NEIGHBOUR_INDEX,
        similar_score=NEIGHBOUR_SCORE, complement_index=NEIGHBOUR_INDEX, complement_score=NEIGHBOUR_SCORE,
        popularity=POPULARITY, meta={"version": f"t-{sorted(blend.items())}", "params": {"blend": blend}}))


def context(n: int = 4) -> Context:
    now = time.time()
    visitor = VisitorProfile(first_seen=now - 60, last_seen=now - 30, visits=1, session_start=now - 60,
                             session_items=["A", "B"])
    return Context(visitor_id="v", customer_id=None, visitor=visitor, customer=None, now=now, n=n,
                   session_timeout_s=1800)


def reasons(blend: dict[str, float], n: int = 4) -> dict[str, str]:
    return {p.item_id: p.reason for p in for_you(model(blend), EMPTY, context(n))}


def test_a_popularity_only_blend_says_popular_not_because_you_viewed() -> None:
    got = reasons({"popularity": 1.0})
    assert got and set(got.values()) == {"popular"}
    assert next(iter(got)) == "D"


def test_co_visited_items_name_the_item_that_voted_for_them() -> None:
    got = reasons({"neighbours": 1.0}, n=2)
    assert got == {"C": "similar_to:A", "F": "similar_to:B"}


def test_als_picks_name_the_viewed_item_their_factors_are_closest_to() -> None:
    got = reasons({"als": 1.0}, n=4)
    assert got["E"] == "because_you_viewed:B"
    assert got["C"] == "because_you_viewed:A"


def test_in_one_list_each_item_gets_its_own_strongest_signal() -> None:
    got = reasons({"neighbours": 1.0, "popularity": 0.9}, n=3)
    assert got["D"] == "popular"  # no vote, the best seller
    assert got["C"] == "similar_to:A"  # A's vote outweighs its low sales


def test_seen_items_are_viewed_before_when_they_may_be_shown() -> None:
    ctx = context(6)
    ctx.exclude_seen = False
    got = {p.item_id: p.reason for p in for_you(model({"recent": 1.0, "popularity": 0.1}), EMPTY, ctx)}
    assert got["A"] == got["B"] == "viewed_before"


def test_contributions_are_the_terms_the_blend_sums() -> None:
    served = model({"als": 0.5, "neighbours": 0.25, "popularity": 0.5, "recent": 1.0})
    idx, weights = np.array([0, 1], dtype=np.int32), np.array([3.0, 2.55], dtype=np.float32)
    vector = served.fold_in(None, idx, weights)
    signals = Signals(served.blend, served.scores(vector), served.popularity_prior, (idx, weights),
                      (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)), NEIGHBOUR_INDEX, NEIGHBOUR_SCORE)
    from engine.ranking.blend import blend_scores

    everything = np.arange(len(ITEMS))
    total = sum(contributions(signals, everything).values())
    expected = blend_scores(served.blend, als=signals.als, recent=signals.recent, history=signals.history,
                            neighbour_index=NEIGHBOUR_INDEX, neighbour_score=NEIGHBOUR_SCORE,
                            popularity=signals.popularity)
    assert total == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert dominant(signals, np.array([3]))[0] == "popularity"
