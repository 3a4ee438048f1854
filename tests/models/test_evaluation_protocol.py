"""The offline protocol's pure parts on tiny fixtures: metrics, the time split, exclusions, the blend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.ranking.blend import blend_scores, blend_weights
from models.evaluate import Protocol, exclusions, time_split
from models.session_protocol import split_at_tail
from models.rows import Interaction
from models.metrics import ranking_metrics

DAY = 86400.0


def test_metrics_match_hand_computed_values() -> None:
    ranked = [["a", "b", "c", "d"], ["x", "y", "z", "w"], ["p", "q"]]
    targets = [{"b", "d", "e"}, {"nope"}, {"p"}]
    m = ranking_metrics(ranked, targets, (2, 4), catalogue_size=20)
    # person 1: hit at rank 2 (and rank 4); person 2: nothing; person 3: hit at rank 1
    assert m["hit_rate@2"] == pytest.approx(2 / 3)
    assert m["recall@2"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    ndcg1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))  # ideal: 2 hits in 2 slots
    assert m["ndcg@2"] == pytest.approx((ndcg1 + 0 + 1) / 3)
    ndcg1_4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert m["ndcg@4"] == pytest.approx((ndcg1_4 + 0 + 1) / 3)
    assert m["recall@4"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["coverage@2"] == pytest.approx(6 / 20) and m["coverage@4"] == pytest.approx(10 / 20)
    perfect = ranking_metrics([["a", "b"]], [{"a", "b"}], (2,), 2)
    assert perfect["ndcg@2"] == pytest.approx(1.0) and perfect["recall@2"] == 1.0
    with pytest.raises(ValueError):
        ranking_metrics([["a"]], [], (1,), 1)


def row(day: float, visitor: str, event: str, item: str, customer: str | None = None,
        basket: str | None = None) -> Interaction:
    return Interaction(day * DAY, visitor, customer, event, item, 1, basket)


WEIGHTS = {"product_view": 1.0, "add_to_cart": 4.0, "purchase": 8.0}


def test_time_split_scores_people_with_history_against_what_they_did_next() -> None:
    rows = [
        row(1, "v1", "product_view", "a"), row(1.1, "v1", "add_to_cart", "b"), row(1.2, "v1", "purchase", "c"),
        row(2, "v1", "add_to_cart", "d"),  # still in the cart at the cut-off
        row(3.5, "v1", "product_view", "a"), row(3.6, "v1", "product_view", "d"), row(3.7, "v1", "product_view", "e"),
        row(3.8, "v1", "purchase", "c"),
        row(3.5, "newcomer", "product_view", "a"),  # no history before the cut-off
        row(1, "v2", "product_view", "a"), row(3.5, "v2", "add_to_cart", "a"),  # only a seen item afterwards
        row(1, "anon", "product_view", "x"), row(1.5, "anon", "purchase", "y", customer="c9", basket="o1"),
        row(3.9, "anon", "product_view", "z"),  # the cookie is customer c9 now: one person
    ]
    keep_all = time_split(rows, 3 * DAY, Protocol(test_span_s=DAY, exclude_seen=False, exclude_purchased=False),
                          WEIGHTS)
    people = {q.person: (q, t) for q, t in zip(keep_all.queries, keep_all.targets)}
    assert set(people) == {"v:v1", "v:v2", "c:c9"}
    assert keep_all.cold == 1 and keep_all.active == 4
    query, targets = people["v:v1"]
    assert query.now == 3 * DAY and [r.item_id for r in query.history] == ["a", "b", "c", "d"]
    assert targets == {"a", "e", "c"}  # b and d are in the cart: no list shows them, so no target either
    assert query.exclude == {"b", "d"} and all(r.ts < 3 * DAY for r in keep_all.train)
    assert people["c:c9"][0].customer_id == "c9" and people["c:c9"][0].visitor_id == "anon"

    strict = time_split(rows, 3 * DAY, Protocol(test_span_s=DAY), WEIGHTS)
    people = {q.person: (q, t) for q, t in zip(strict.queries, strict.targets)}
    assert people["v:v1"][1] == {"e"} and people["v:v1"][0].exclude == {"a", "b", "c", "d"}
    assert "v:v2" not in people and strict.nothing_new == 1


def test_the_session_so_far_is_given_and_what_came_next_is_the_target() -> None:
    rows = [row(1, "v1", "product_view", "a"), row(1.1, "v1", "add_to_cart", "b"),
            row(3.5, "v1", "product_view", "x"), row(3.6, "v1", "product_view", "y"), row(3.7, "v1", "product_view", "x"),
            row(3.5, "new", "product_view", "a"), row(3.6, "new", "product_view", "c"),
            row(3.5, "once", "product_view", "a")]
    split = time_split(rows, 3 * DAY, Protocol(test_span_s=DAY, exclude_seen=False, reveal=1), WEIGHTS)
    people = {q.person: (q, t) for q, t in zip(split.queries, split.targets)}
    assert set(people) == {"v:v1", "v:new"} and split.nothing_new == 1
    query, targets = people["v:v1"]
    assert query.now == 3.5 * DAY and query.revealed == 1 and [r.item_id for r in query.history] == ["a", "b", "x"]
    assert targets == {"x", "y"}  # viewed again after the revealed view: still a target when seen items may show
    assert people["v:new"][1] == {"c"} and people["v:new"][0].revealed == 1  # a newcomer, from its first click


def test_baselines_build_the_same_row_from_history_as_training_did(demo_files: tuple[Path, Path]) -> None:
    from dataclasses import replace

    from engine.events.history import interactions
    from engine.ingest.importer import ImportReport, read_events
    from models.baselines import als, item_knn
    from models.train import TrainConfig

    events = [e.model_dump() for _, e in zip(range(2000), read_events(demo_files[1], ImportReport(), accepted_at=0))]
    rows = list(interactions(events))
    split = time_split(rows, rows[len(rows) * 3 // 4].ts, Protocol(test_span_s=DAY, ks=(10,)), WEIGHTS)
    config = TrainConfig(weights=WEIGHTS)
    assert len(split.queries) > 20
    for method in (item_knn(config, "bm25"), item_knn(config, "cosine")):
        rank = method(split)
        assert all(rank(q) == rank(replace(q, revealed=1)) for q in split.queries)
    rank = als(config)(split)  # folding in the same row lands close to the trained factors
    overlap = [len(set(rank(q)) & set(rank(replace(q, revealed=1)))) / 10 for q in split.queries]
    assert sum(overlap) / len(overlap) > 0.8


def test_validation_is_carved_from_the_training_period_only() -> None:
    rows = [row(day + n / 10, f"v{n}", "product_view", f"i{(day * 7 + n) % 13}") for day in range(10) for n in range(5)]
    validation, test = split_at_tail(rows, Protocol(test_span_s=2 * DAY, exclude_seen=False), WEIGHTS)
    last = max(r.ts for r in rows)
    assert test.cutoff == last - 2 * DAY and validation.cutoff == test.cutoff - 2 * DAY
    assert validation.end == test.cutoff
    assert max(r.ts for r in validation.train) < validation.cutoff
    assert validation.queries and test.queries
    later = {r.item_id for r in rows if r.ts >= test.cutoff} - {r.item_id for r in rows if r.ts < test.cutoff}
    assert not later & set().union(*validation.targets)


def test_exclusions_follow_the_settings_like_production() -> None:
    history = [row(1, "v", "product_view", "a"), row(1, "v", "add_to_cart", "b"), row(1, "v", "purchase", "c"),
               row(1, "v", "add_to_cart", "d"), row(1, "v", "remove_from_cart", "d")]
    assert exclusions(history, Protocol(1, exclude_seen=False, exclude_purchased=False)) == {"b"}
    assert exclusions(history, Protocol(1, exclude_seen=False)) == {"b", "c"}
    assert exclusions(history, Protocol(1)) == {"a", "b", "c", "d"}


def test_blend_adds_unit_scaled_signals_with_their_weights() -> None:
    n = 6
    als = np.array([0.0, 2.0, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    neighbour_index = np.full((n, 2), -1, dtype=np.int32)
    neighbour_score = np.zeros((n, 2), dtype=np.float32)
    neighbour_index[0] = [4, 5]
    neighbour_score[0] = [0.9, 0.3]
    popularity = np.array([0, 0, 0, 1.0, 0, 0], dtype=np.float32)
    common = dict(als=als, recent=(np.array([0], dtype=np.int32), np.array([3.0], dtype=np.float32)),
                  history=(np.array([0, 2], dtype=np.int32), np.array([1.0, 10.0], dtype=np.float32)),
                  neighbour_index=neighbour_index, neighbour_score=neighbour_score, popularity=popularity)
    only_als = blend_scores({"als": 1.0}, **common)
    assert only_als.tolist() == pytest.approx([0, 1.0, 0.5, 0, 0, 0])
    history = blend_scores({"history": 1.0}, **common)
    assert history[2] == pytest.approx(1.0) and history[0] == pytest.approx(math.log1p(1) / math.log1p(10))
    covisit = blend_scores({"neighbours": 1.0}, **common)
    assert covisit[4] == pytest.approx(1.0) and covisit[5] == pytest.approx(1 / 3) and covisit[1] == 0
    mixed = blend_scores({"als": 1.0, "popularity": 0.5, "recent": 2.0}, **common)
    assert mixed.tolist() == pytest.approx([2.0, 1.0, 0.5, 0.5, 0, 0])


def test_blend_adds_the_session_signals_scaled_to_their_maximum() -> None:
    n = 5
    common = dict(als=np.zeros(n, dtype=np.float32), recent=(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)),
                  history=(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)),
                  neighbour_index=np.full((n, 1), -1, dtype=np.int32), neighbour_score=np.zeros((n, 1), dtype=np.float32),
                  popularity=np.zeros(n, dtype=np.float32),
                  session_neighbours=(np.array([1, 3], dtype=np.int32), np.array([2.0, 0.5], dtype=np.float32)),
                  sequence=(np.array([3, 4], dtype=np.int32), np.array([1.0, 4.0], dtype=np.float32)))
    assert blend_scores({"session_neighbours": 1.0}, **common).tolist() == pytest.approx([0, 1.0, 0, 0.25, 0])
    assert blend_scores({"sequence": 2.0}, **common).tolist() == pytest.approx([0, 0, 0, 0.5, 2.0])
    both = blend_scores({"session_neighbours": 1.0, "sequence": 1.0}, **common)
    assert both.tolist() == pytest.approx([0, 1.0, 0, 0.5, 1.0])
    assert blend_scores({"als": 1.0}, **common).tolist() == [0.0] * n  # unused signals change nothing


def test_artifacts_without_blend_weights_serve_als_alone() -> None:
    assert blend_weights({}) == {"als": 1.0}
    assert blend_weights({"params": {"blend": {"als": 0.5, "history": 0, "unknown": 3}}}) == {"als": 0.5}
