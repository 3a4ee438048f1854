"""The compiled kernels of the for-you path (engine.ranking.foldin, engine.ranking.blend) against the plain numpy
formulas they replace."""

from __future__ import annotations

import numpy as np
import pytest

from engine.ranking.blend import closest_anchor, top_k
from engine.ranking.foldin import fold_in, solved_factors


def _model(n: int = 500, f: int = 16, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = (rng.standard_normal((n, f)) * 0.3).astype(np.float32)
    gram = (factors.T @ factors + 0.05 * np.eye(f)).astype(np.float32)
    return factors, gram, solved_factors(factors, gram)


@pytest.mark.parametrize("m", [1, 3, 16, 17, 120])  # Woodbury up to f items, the direct solve past it
def test_fold_in_is_the_exact_als_step(m: int) -> None:
    factors, gram, solved = _model()
    rng = np.random.default_rng(m)
    items = rng.choice(len(factors), m, replace=False).astype(np.int32)
    confidence = (rng.random(m) * 40).astype(np.float32)
    confidence[0] = 1.0  # Cu - I has a zero: no inverse of it is taken
    yu = factors[items].astype(np.float64)
    a = gram + yu.T @ ((confidence - 1.0)[:, None] * yu)
    expected = np.linalg.solve(a, yu.T @ confidence)
    got = fold_in(factors, gram, solved, items, confidence)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_top_k_matches_a_full_sort_and_leaves_out_what_it_must() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(1000).astype(np.float32)
    penalty = np.zeros(1000, dtype=np.float32)
    penalty[::7] = -np.inf  # unavailable
    scores[3] = np.nan
    excluded = np.array([10, 11, 12], dtype=np.int32)
    items, values = top_k(scores, penalty, excluded, 25)
    eligible = [i for i in range(1000) if i % 7 and i not in (3, 10, 11, 12)]
    expected = sorted(eligible, key=lambda i: -scores[i])[:25]
    assert items.tolist() == expected
    assert values.tolist() == scores[expected].tolist()


def test_top_k_breaks_ties_by_index_and_returns_fewer_when_few_are_eligible() -> None:
    scores = np.array([1, 2, 2, 0, 2, 1], dtype=np.float32)
    penalty = np.array([0, 0, 0, -np.inf, 0, 0], dtype=np.float32)
    items, _ = top_k(scores, penalty, np.zeros(0, dtype=np.int32), 4)
    assert items.tolist() == [1, 2, 4, 0]
    items, _ = top_k(scores, penalty, np.array([0, 1, 2], dtype=np.int32), 10)
    assert items.tolist() == [4, 5]
    assert top_k(scores, penalty, np.zeros(0, dtype=np.int32), 0)[0].tolist() == []


def test_closest_anchor_is_the_strongest_weighted_cosine() -> None:
    factors, _, _ = _model()
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    picks, anchors = np.array([5, 6, 7]), np.array([1, 2, 3, 4], dtype=np.int32)
    strength = np.array([3.0, 1.0, 0.5, 2.0], dtype=np.float32)
    expected = ((unit[picks] @ unit[anchors].T) * strength).argmax(axis=1)
    assert closest_anchor(unit, picks, anchors, strength).tolist() == expected.tolist()


def test_blend_counts_each_covisited_item_once_whatever_its_votes_sum_to() -> None:
    """A neighbour whose votes cancel out (or are zero) must not be added twice."""
    from engine.ranking.blend import blend_scores

    neighbour_index = np.array([[2, 3], [2, -1], [-1, -1], [-1, -1]], dtype=np.int32)
    neighbour_score = np.array([[0.0, 1.0], [0.5, 0.0], [0, 0], [0, 0]], dtype=np.float32)
    scores = blend_scores({"neighbours": 1.0}, als=np.zeros(4, dtype=np.float32),
                          recent=(np.array([0, 1], dtype=np.int32), np.array([1.0, 1.0], dtype=np.float32)),
                          history=(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)),
                          neighbour_index=neighbour_index, neighbour_score=neighbour_score,
                          popularity=np.zeros(4, dtype=np.float32))
    assert scores.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])
