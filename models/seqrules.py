"""Sequential rules (SR; Kamehkhosh et al. 2017, as in Ludewig & Jannach's session-rec): what is
used next after an item within a session.

Every time item b follows item a in a session, at most ``steps`` steps later, the rule a -> b gains
1 / distance. Each item keeps its ``keep`` strongest rules, as a table (items x keep, -1 padded)
like the item-item neighbours, so serving reads a row per session item and computes nothing else.
SR proper scores the rules of the session's last item; ``scores`` can also add those of a few
earlier ones, each divided by its recency rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.sparse import coo_matrix

from models.neighbours import top_per_row
from models.sessions import SessionLog


@dataclass(frozen=True)
class RuleParams:
    steps: int = 10  # furthest distance a rule spans
    keep: int = 50  # rules kept per item
    last_n: int = 1  # session items whose rules are scored, most recent first


@njit(cache=True)
def _pairs(indptr: np.ndarray, items: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    total = 0
    for s in range(len(indptr) - 1):
        n = indptr[s + 1] - indptr[s]
        for j in range(1, n):
            total += min(j, steps)
    src = np.empty(total, dtype=np.int32)
    dst = np.empty(total, dtype=np.int32)
    weight = np.empty(total, dtype=np.float32)
    t = 0
    for s in range(len(indptr) - 1):
        start, end = indptr[s], indptr[s + 1]
        for j in range(start + 1, end):
            for d in range(1, min(j - start, steps) + 1):
                src[t], dst[t], weight[t] = items[j - d], items[j], 1.0 / d
                t += 1
    return src, dst, weight


def build_rules(log: SessionLog, n_items: int, params: RuleParams) -> tuple[np.ndarray, np.ndarray]:
    """(index, score), both (n_items, keep): each item's strongest successors, -1 / 0 padded."""
    src, dst, weight = _pairs(log.indptr, log.items, params.steps)
    if len(src) == 0 or n_items == 0:
        return np.full((n_items, params.keep), -1, dtype=np.int32), np.zeros((n_items, params.keep), dtype=np.float32)
    rules = coo_matrix((weight, (src, dst)), shape=(n_items, n_items), dtype=np.float32).tocsr()
    rules.sum_duplicates()
    rules.sort_indices()  # equal weights: the lower index first
    rows = np.repeat(np.arange(n_items), np.diff(rules.indptr))
    return top_per_row(rows, rules.indices, rules.data, n_items, params.keep)


@njit(cache=True, nogil=True)
def _scores(index: np.ndarray, score: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = len(query) * index.shape[1]
    items = np.empty(size, dtype=np.int32)
    values = np.empty(size, dtype=np.float32)
    n = 0
    for r in range(len(query)):
        row = query[r]
        for q in range(index.shape[1]):
            item = index[row, q]
            if item < 0:
                break
            found = -1
            for j in range(n if r > 0 else 0):  # (a row's items are distinct; a few rows: a scan)
                if items[j] == item:
                    found = j
                    break
            if found < 0:
                items[n], values[n] = item, 0.0
                found = n
                n += 1
            values[found] += score[row, q] / (r + 1)
    return items[:n].copy(), values[:n].copy()


def scores(index: np.ndarray, score: np.ndarray, query: np.ndarray, last_n: int) -> tuple[np.ndarray, np.ndarray]:
    """(items, weights) from the rules of the session's ``last_n`` most recent items (``query``: item
    indices, most recent first)."""
    return _scores(index, score, np.ascontiguousarray(query[:last_n], dtype=np.int32))
