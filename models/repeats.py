"""Repeat consumption in a session: how likely the next step is an item the visit already showed.

On session data people often go back to an item they looked at a few steps earlier (compare two
products, return to the first). How likely that is depends on how far back the item is, and the
shop's own sessions say by how much: the most recent item is the page on screen (consecutive
repeats are one step, ``models.sessions``), the one before it is the usual way back, older ones
fade. ``repeat_curve`` measures that per recency rank at train time; the blend's ``repeat`` signal
(engine.ranking) gives the visit's items those probabilities, and tuning decides its weight.
"""

from __future__ import annotations

import numpy as np

from models.sessions import SessionLog

DEPTH = 20  # recency ranks measured; items further back in a visit get nothing from this signal


def repeat_curve(log: SessionLog, depth: int = DEPTH) -> np.ndarray:
    """``curve[r]``: of the steps whose visit so far held at least ``r + 1`` distinct items, the
    share whose item was the ``r + 1``-th most recent of them (float32, ``depth`` long; zeros for
    a log without such steps)."""
    hits = np.zeros(depth, dtype=np.int64)
    chances = np.zeros(depth, dtype=np.int64)
    for s in range(len(log)):
        recent: list[int] = []  # distinct items, most recent first
        for item in log.steps(s).tolist():
            if recent:
                chances[:min(len(recent), depth)] += 1
                if item in recent:
                    rank = recent.index(item)
                    if rank < depth:
                        hits[rank] += 1
                    del recent[rank]
            recent.insert(0, item)
    return np.divide(hits, chances, out=np.zeros(depth, dtype=np.float64), where=chances > 0).astype(np.float32)


def repeat_scores(curve: np.ndarray, session: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items, weights): each of the visit's items (distinct, most recent first) with the share of
    ``curve`` for its rank; the items beyond the curve or at a zero share are left out."""
    n = min(len(curve), len(session))
    items, weights = session[:n].astype(np.int32, copy=False), curve[:n]
    keep = weights > 0
    return items[keep], weights[keep].astype(np.float32, copy=False)
