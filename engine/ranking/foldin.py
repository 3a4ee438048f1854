"""ALS fold-in: a person's factor vector from their items, with the item factors held fixed.

This is the exact ALS least-squares step for one user (Hu, Koren & Volinsky 2008, eq. 4), so a new
session counts as much as if it had been in training:

    x = (G + Yuᵀ (Cu - I) Yu)⁻¹ Yuᵀ Cu p(u),   G = YᵀY + λI

It runs on every for-you list computed. Built directly, the f x f system (f = 64 factors) is the
costly part; a visitor's profile holds a few dozen items (m), so the Woodbury identity solves an
m x m system instead, from ``G⁻¹`` applied to every item once per model (``solved_factors``):

    Z = Yu G⁻¹,  S = Z Yuᵀ,  D = Cu - I,  x = Zᵀ (c - (I + D S)⁻¹ D S c)

(no inverse of D, so items whose confidence is exactly 1 are fine). A long training row (m > f)
takes the direct solve. Both run in float64, compiled by numba (`vitrine bench` measures them).
"""

from __future__ import annotations

import numpy as np
from numba import njit


def solved_factors(item_factors: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``Y G⁻¹`` (items x f, float32 like the factors), once per model: the part of every fold-in
    that does not depend on the person."""
    solved = np.linalg.solve(gram.astype(np.float64), item_factors.T.astype(np.float64)).T
    return np.ascontiguousarray(solved, dtype=np.float32)  # rows are gathered per request


@njit(cache=True, nogil=True)
def fold_in(item_factors: np.ndarray, gram: np.ndarray, solved: np.ndarray, items: np.ndarray,
            confidence: np.ndarray) -> np.ndarray:
    """The person's vector (float32) from their distinct ``items`` and the ``confidence`` of each."""
    m, f = len(items), item_factors.shape[1]
    c = confidence.astype(np.float64)
    yu = np.empty((m, f), dtype=np.float64)
    for j in range(m):
        yu[j] = item_factors[items[j]]
    if m <= f:
        z = np.empty((m, f), dtype=np.float64)
        for j in range(m):
            z[j] = solved[items[j]]
        s = z @ yu.T
        system = np.eye(m) + (c - 1.0).reshape(m, 1) * s
        t = np.linalg.solve(system, (c - 1.0) * (s @ c))
        return (z.T @ (c - t)).astype(np.float32)
    a = gram.astype(np.float64) + yu.T @ ((c - 1.0).reshape(m, 1) * yu)
    return np.linalg.solve(a, yu.T @ c).astype(np.float32)
