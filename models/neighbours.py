"""Item-item neighbours for "similar" and "bought together", precomputed at training time.

Serving reads a row of a dense (items x K) table: no similarity is computed per request.
"""

from __future__ import annotations

import warnings

import numpy as np
from implicit.nearest_neighbours import CosineRecommender
from scipy.sparse import csr_matrix


def top_neighbours(user_items: csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine neighbours of each item over the rows it co-occurs in (people, or orders).

    Returns (index, score), both (n_items, k); unused slots hold index -1 and score 0.
    """
    n_items = user_items.shape[1]
    index = np.full((n_items, k), -1, dtype=np.int32)
    score = np.zeros((n_items, k), dtype=np.float32)
    if user_items.nnz == 0 or n_items == 0:
        return index, score
    model = CosineRecommender(K=k + 1, num_threads=0)
    with warnings.catch_warnings():  # implicit transposes internally and then warns about it
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(user_items.astype(np.float64), show_progress=False)
    sim = model.similarity.tocsr()
    for item in range(n_items):
        start, end = sim.indptr[item], sim.indptr[item + 1]
        cols, vals = sim.indices[start:end], sim.data[start:end]
        keep = (cols != item) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")[:k]
        index[item, : len(order)] = cols[order]
        score[item, : len(order)] = vals[order]
    return index, score
