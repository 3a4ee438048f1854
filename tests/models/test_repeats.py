"""The repeat curve: how often a visit's next step goes back to its r-th latest item."""

from __future__ import annotations

import numpy as np

from models.repeats import repeat_curve, repeat_scores
from models.sessions import SessionLog


def log_of(sessions: list[list[int]]) -> SessionLog:
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    items = np.asarray([i for s in sessions for i in s], dtype=np.int32)
    return SessionLog(indptr, items, np.arange(len(sessions), dtype=np.float64))


def test_curve_is_the_share_of_steps_going_back_to_each_rank() -> None:
    # Steps with one item before: 4 (none goes back); with two distinct before: 3, of which
    # two go back to the second latest (0 in [0, 1, 0], 2 in [2, 3, 2, 5]).
    curve = repeat_curve(log_of([[0, 1, 0], [2, 3, 2, 5], [4, 6]]), depth=3)
    assert curve.dtype == np.float32
    assert np.allclose(curve, [0.0, 2 / 3, 0.0])


def test_an_item_gone_back_to_moves_to_the_front() -> None:
    # 0 1 2 1 0: at the last step the latest distinct items are [1, 2, 0], so 0 is third.
    assert np.allclose(repeat_curve(log_of([[0, 1, 2, 1, 0]]), depth=3), [0.0, 1 / 3, 1 / 2])


def test_no_steps_no_curve() -> None:
    assert not repeat_curve(log_of([[7]]), depth=4).any()


def test_scores_follow_the_session_order_and_drop_zero_shares() -> None:
    items, weights = repeat_scores(np.array([0.0, 0.5, 0.25], dtype=np.float32), np.array([9, 8, 7, 6], dtype=np.int32))
    assert items.tolist() == [8, 7] and np.allclose(weights, [0.5, 0.25])
