"""Session-based models on crafted sessions: sessions from a log, the V-SKNN index and votes, the
sequential rules, and the session protocol's queries (pure logic, values worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from models import seqrules, sknn
from models.evaluate import Protocol
from models.rows import Interaction
from models.session_protocol import session_split
from models.sessions import SessionLog, anonymous, collapse, recent_distinct, split_sessions

MIN = 60.0
WEIGHTS = {"product_view": 1.0, "add_to_cart": 4.0, "purchase": 8.0}


def row(minute: float, visitor: str, item: str, event: str = "product_view") -> Interaction:
    return Interaction(minute * MIN, visitor, None, event, item)


def log_of(sessions: list[list[int]]) -> SessionLog:
    indptr = np.cumsum([0] + [len(s) for s in sessions]).astype(np.int64)
    return SessionLog(indptr, np.array(sum(sessions, []), dtype=np.int32), np.arange(len(sessions), dtype=np.float64))


def test_a_log_is_cut_after_thirty_idle_minutes_and_repeats_are_one_step() -> None:
    rows = [row(0, "u1", "a"), row(1, "u1", "a", "add_to_cart"), row(2, "u1", "b"), row(40, "u1", "c"),
            row(5, "u2", "b"), row(6, "u2", "x"), row(7, "u2", "c", "page_view"), row(8, "u2", "a")]
    index = {"a": 0, "b": 1, "c": 2}
    log = split_sessions(rows, index, WEIGHTS)
    # u1: [a, b] ends at 2, u2: [b, a] (x unknown, the page view has no weight) ends at 8, u1: [c] at 40
    assert [log.steps(s).tolist() for s in range(len(log))] == [[0, 1], [1, 0], [2]]
    assert log.last_ts.tolist() == [2 * MIN, 8 * MIN, 40 * MIN]
    assert collapse("aabba") == ["a", "b", "a"] and recent_distinct("abcb", 2) == ["b", "c"]
    visitors = {r.visitor_id for r in anonymous(rows)}
    assert len(visitors) == 3 and all(v.startswith(("u1~", "u2~")) for v in visitors)


def test_vsknn_votes_match_the_hand_computed_formula() -> None:
    # items a=0 b=1 c=2 d=3 e=4; sessions in the order they ended
    log = log_of([[0, 1, 2], [1, 3], [0, 1, 4], [2, 4]])
    index = sknn.build_index(log, 5, per_item=10)
    assert index.item_sessions[index.item_indptr[1]:index.item_indptr[2]].tolist() == [2, 1, 0]  # newest first
    # Session so far: a then b (most recent first: b, a). Position weights b 1, a 1/2; L = 2.
    # Session 0 {a,b,c} and 2 {a,b,e}: (1 + 1/2) / 2 = 0.75; session 1 {b,d}: 1/2 = 0.5; each shares
    # b, the latest item, so no score decay. Session 3 shares nothing.
    items, votes = sknn.scores(index, np.array([1, 0]), 5, sknn.SknnParams())
    got = dict(zip(items.tolist(), votes.tolist()))
    assert got == pytest.approx({0: 1.5, 1: 2.0, 2: 0.75, 3: 0.5, 4: 0.75})

    # Session so far: c then d (d rank 0, weight 1; c rank 1, weight 1/2). Session 1 {b,d} shares d:
    # similarity 1/2, vote 1/2. Sessions 0 {a,b,c} and 3 {c,e} share c only: similarity (1/2)/2, and
    # their latest shared item is the second most recent, so their vote is divided by 2: 0.125.
    items, votes = sknn.scores(index, np.array([3, 2]), 5, sknn.SknnParams())
    got = dict(zip(items.tolist(), votes.tolist()))
    assert got == pytest.approx({1: 0.5 + 0.125, 3: 0.5, 0: 0.125, 2: 0.25, 4: 0.125})


def test_vsknn_keeps_the_most_recent_sessions_and_the_k_most_similar() -> None:
    log = log_of([[0, 1], [0, 2], [0, 3], [0, 4]])
    index = sknn.build_index(log, 5, per_item=2)  # item 0 keeps sessions 3 and 2 only
    assert index.item_sessions[index.item_indptr[0]:index.item_indptr[1]].tolist() == [3, 2]
    items, _ = sknn.scores(index, np.array([0]), 5, sknn.SknnParams())
    assert sorted(items.tolist()) == [0, 3, 4]
    full = sknn.build_index(log, 5, per_item=10)
    items, _ = sknn.scores(full, np.array([0]), 5, sknn.SknnParams(sample=1))
    assert sorted(items.tolist()) == [0, 4]
    # Two neighbours of equal similarity, k = 1: the more recent one votes.
    items, _ = sknn.scores(full, np.array([0]), 5, sknn.SknnParams(k=1))
    assert sorted(items.tolist()) == [0, 4]
    # A half-life of one second: the older session (ended at t=2) counts half of the newer (t=3).
    decayed = sknn.scores(full, np.array([0]), 5, sknn.SknnParams(half_life_s=1.0), now=3.0)
    got = dict(zip(*(a.tolist() for a in decayed)))
    assert got[3] == pytest.approx(2 * got[2]) and got[4] == pytest.approx(1.0)
    assert sknn.scores(full, np.array([], dtype=np.int32), 5, sknn.SknnParams())[0].tolist() == []
    # A session's last steps only: [2, 3, 1] keeps 3 and 1, so item 2 leads nowhere.
    capped = sknn.build_index(log_of([[2, 3, 1], [0, 1]]), 5, per_item=10, session_items=2)
    assert capped.session_items[capped.session_indptr[0]:capped.session_indptr[1]].tolist() == [1, 3]
    assert sknn.scores(capped, np.array([2]), 5, sknn.SknnParams())[0].tolist() == []


def test_sequential_rules_weigh_what_follows_by_distance() -> None:
    log = log_of([[0, 1, 2], [1, 3], [0, 1, 4], [2, 4]])
    index, score = seqrules.build_rules(log, 5, seqrules.RuleParams(steps=10, keep=3))
    # a->b twice (1 + 1), a->c and a->e at distance 2 (1/2 each)
    assert index[0].tolist() == [1, 2, 4] and score[0].tolist() == [2.0, 0.5, 0.5]
    assert index[3].tolist() == [-1, -1, -1]
    short = seqrules.build_rules(log, 5, seqrules.RuleParams(steps=1, keep=3))
    assert short[0][0].tolist() == [1, -1, -1]
    # The session's last item's rules, plus the one before it at half weight.
    items, weights = seqrules.scores(index, score, np.array([1, 0]), last_n=2)
    assert dict(zip(items.tolist(), weights.tolist())) == pytest.approx({2: 1.25, 3: 1.0, 4: 1.25, 1: 1.0})
    items, _ = seqrules.scores(index, score, np.array([1, 0]), last_n=1)
    assert sorted(items.tolist()) == [2, 3, 4]


def test_the_session_protocol_asks_for_every_next_step_of_held_out_sessions() -> None:
    rows = [row(0, "s1", "a"), row(1, "s1", "b"), row(2, "s1", "c"),  # training
            row(100, "s2", "a"), row(101, "s2", "a", "add_to_cart"), row(102, "s2", "new"), row(103, "s2", "b"),
            row(104, "s2", "c"), row(105, "s2", "a", "purchase"),
            row(99, "s3", "b"),  # one known step: nothing to predict
            row(100, "s4", "b"), row(101, "s4", "a", "add_to_cart"), row(102, "s4", "c"), row(103, "s4", "a")]
    protocol = Protocol(test_span_s=0, exclude_seen=False, exclude_purchased=False, sessions=True)
    split = session_split(rows, 50 * MIN, protocol, WEIGHTS)
    assert {r.visitor_id for r in split.train} == {"s1"} and split.cold == 1
    s2 = [(q, t) for q, t in zip(split.queries, split.targets) if q.visitor_id == "s2"]
    # s2's steps: a (view + cart), b, c, a (the unknown item left out); the cart holds a until bought
    assert [(len(q.history), t) for q, t in s2] == [(2, {"b"}), (3, {"c"})]
    assert s2[0][0].revealed == 2 and s2[0][0].now == 101 * MIN and s2[0][0].exclude == {"a"}
    s4 = [t for q, t in zip(split.queries, split.targets) if q.visitor_id == "s4"]
    assert s4 == [{"a"}, {"c"}] and split.nothing_new == 2  # a is in the cart at s2's and s4's last step
