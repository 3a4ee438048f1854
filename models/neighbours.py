"""Item-item neighbours for "similar" and "bought together", precomputed at training time.

Serving reads a row of a dense (items x K) table: no similarity is computed per request.
"""

from __future__ import annotations

import warnings

import numpy as np
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from scipy.sparse import csr_matrix


SIMILARITIES = ("cosine", "bm25")


def top_neighbours(user_items: csr_matrix, k: int, similarity: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Cosine (or BM25-weighted) neighbours of each item over the rows it co-occurs in (people,
    or orders). BM25 (implicit's, K1 100, B 0.8) down-weights long rows and lets items used by
    many rank higher than cosine does.

    Returns (index, score), both (n_items, k); unused slots hold index -1 and score 0.
    """
    n_items = user_items.shape[1]
    index = np.full((n_items, k), -1, dtype=np.int32)
    score = np.zeros((n_items, k), dtype=np.float32)
    if user_items.nnz == 0 or n_items == 0:
        return index, score
    model = (BM25Recommender if similarity == "bm25" else CosineRecommender)(K=k + 1, num_threads=0)
    with warnings.catch_warnings():  # implicit transposes internally and then warns about it
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(user_items.astype(np.float64), show_progress=False)
    sim = model.similarity.tocsr()
    rows = np.repeat(np.arange(n_items), np.diff(sim.indptr))
    keep = (sim.indices != rows) & (sim.data > 0)
    return top_per_row(rows[keep], sim.indices[keep], sim.data[keep], n_items, k)


def top_per_row(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, score), both (n_rows, k): each row's ``k`` largest values, -1 / 0 padded; equal
    values keep their order in the input."""
    index = np.full((n_rows, k), -1, dtype=np.int32)
    score = np.zeros((n_rows, k), dtype=np.float32)
    order = np.lexsort((-values, rows))  # by row, then largest first (stable: ties as given)
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    kept = rank < k
    index[rows[kept], rank[kept]] = cols[kept]
    score[rows[kept], rank[kept]] = values[kept]
    return index, score
