"""The for-you score: a weighted blend of signals over the whole catalogue, for one person.

ALS alone ranks what people like this person like; on real shop data it loses to simpler signals
that it smooths away: what the person did recently (people come back to what they looked at, and
wholesale customers rebuy), what is co-visited with their items, and what sells. Each signal is
scaled to [0, 1] of its own maximum and summed with weights that ``vitrine evaluate`` tunes on a
validation split (``VITRINE_BLEND``, recorded in each model artifact so a model version always
serves the blend it was trained and measured with).

This runs over every item for every for-you list, and was most of a request's cost: as numpy,
some thirty calls with full-length temporaries, more than a whole no-op HTTP request. The loops
below are compiled by numba into one pass each (``vitrine bench`` measures the result), and stay
plain Python, so they read (and test) as the formula they compute. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numba import njit

from engine.settings import BLEND_SIGNALS

# Artifacts trained before the blend existed served ALS alone: keep serving them that way.
ALS_ONLY: dict[str, float] = {"als": 1.0}
_NONE_I = np.zeros(0, dtype=np.int32)
_NONE_F = np.zeros(0, dtype=np.float32)


def blend_weights(meta: Mapping[str, object]) -> dict[str, float]:
    """The weights a model artifact was trained with (ALS alone for artifacts that predate them)."""
    params = meta.get("params")
    blend = params.get("blend") if isinstance(params, Mapping) else None
    if not isinstance(blend, Mapping):
        return dict(ALS_ONLY)
    return {k: float(v) for k, v in blend.items() if k in BLEND_SIGNALS and float(v) != 0.0}


@njit(cache=True, nogil=True)
def _unit(weights: np.ndarray, damp: bool) -> np.ndarray:
    """A sparse signal scaled to [0, 1] of its maximum (``damp``: log1p first, as counts grow)."""
    out = np.empty(len(weights), dtype=np.float32)
    top = 0.0
    for j in range(len(weights)):
        out[j] = np.log1p(weights[j]) if damp else weights[j]
        top = max(top, out[j])
    if top > 0:
        out /= np.float32(top)
    return out


@njit(cache=True, nogil=True)
def _blend(als: np.ndarray, popularity: np.ndarray, recent_items: np.ndarray, recent_weights: np.ndarray,
           history_items: np.ndarray, history_weights: np.ndarray, neighbour_index: np.ndarray,
           neighbour_score: np.ndarray, session_items: np.ndarray, session_weights: np.ndarray,
           sequence_items: np.ndarray, sequence_weights: np.ndarray, w_als: float, w_popularity: float,
           w_recent: float, w_history: float, w_neighbours: float, w_session: float,
           w_sequence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(als)
    top_als = als.max() if n else 0.0
    scale = w_als / top_als if top_als > 0 else w_als
    scores = np.empty(n, dtype=np.float32)
    for i in range(n):
        scores[i] = scale * als[i] + w_popularity * popularity[i]
    recent = _unit(recent_weights, False)
    history = _unit(history_weights, True)
    for j in range(len(recent_items)):
        scores[recent_items[j]] += w_recent * recent[j]
    for j in range(len(history_items)):
        scores[history_items[j]] += w_history * history[j]
    if w_session != 0:
        session = _unit(session_weights, False)
        for j in range(len(session_items)):
            scores[session_items[j]] += w_session * session[j]
    if w_sequence != 0:
        sequence = _unit(sequence_weights, False)
        for j in range(len(sequence_items)):
            scores[sequence_items[j]] += w_sequence * sequence[j]
    if w_neighbours == 0:
        return scores, np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int32)
    covisit, voter, voted = covisit_votes(recent_items, recent, history_items, history, neighbour_index,
                                          neighbour_score, n)
    top = 0.0
    for j in range(len(voted)):
        top = max(top, covisit[voted[j]])
    if top > 0:
        for j in range(len(voted)):
            scores[voted[j]] += w_neighbours * covisit[voted[j]] / top
    return scores, covisit, voter


@njit(cache=True, nogil=True)
def covisit_votes(recent_items: np.ndarray, recent: np.ndarray, history_items: np.ndarray, history: np.ndarray,
                  neighbour_index: np.ndarray, neighbour_score: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-visitation: every item the person touched votes for its neighbours, by its strength in
    [0, 1] (an item in both signals votes twice, once per strength: the same as voting their sum).
    (votes per item, the item of theirs whose single vote for it was largest or -1, the voted items):
    the blend's neighbours term and the ``similar_to:X`` of a reason (engine.ranking.reasons)."""
    covisit = np.zeros(n, dtype=np.float32)
    voter = np.full(n, -1, dtype=np.int32)
    best = np.zeros(n, dtype=np.float32)
    voted = np.empty((len(recent_items) + len(history_items)) * neighbour_index.shape[1], dtype=np.int32)
    n_voted = 0
    for signal in range(2):
        anchors, strength = (recent_items, recent) if signal == 0 else (history_items, history)
        for j in range(len(anchors)):
            row = anchors[j]
            for q in range(neighbour_index.shape[1]):
                item = neighbour_index[row, q]
                if item < 0:  # -1 pads the row's end
                    break
                vote = neighbour_score[row, q] * strength[j]
                if voter[item] < 0:
                    voted[n_voted] = item
                    n_voted += 1
                    voter[item], best[item] = row, vote
                elif vote > best[item]:  # the first of equal votes keeps it
                    voter[item], best[item] = row, vote
                covisit[item] += vote
    return covisit, voter, voted[:n_voted]


class Blended(NamedTuple):
    """A person's scores, and the co-visitation votes they hold (``covisit_votes``; empty arrays
    when the blend gives co-visitation no weight), which a reason reads rather than recounts."""

    scores: np.ndarray
    covisit: np.ndarray
    voter: np.ndarray


def blend(
    weights: Mapping[str, float],
    *,
    als: np.ndarray,
    recent: tuple[np.ndarray, np.ndarray],
    history: tuple[np.ndarray, np.ndarray],
    neighbour_index: np.ndarray,
    neighbour_score: np.ndarray,
    popularity: np.ndarray,
    session_neighbours: tuple[np.ndarray, np.ndarray] = (_NONE_I, _NONE_F),
    sequence: tuple[np.ndarray, np.ndarray] = (_NONE_I, _NONE_F),
) -> Blended:
    """One float32 score per item, with the votes behind its co-visitation term.

    ``als``: the folded-in person vector's scores. ``recent``: (distinct items, weights) from the profile,
    strongest and most recent first (the visit under way, the cart, earlier visits, purchases).
    ``history``: (distinct items, weights) of the person's training row, decayed by age. ``neighbour_*``:
    the model's item-item table (items x K, -1 padded). ``popularity``: a prior in [0, 1].
    ``session_neighbours``: (items, votes) of the sessions most like the visit under way (models.sknn).
    ``sequence``: (items, weights) of what follows its latest items (models.seqrules).
    """
    return Blended(*_blend(
        np.ascontiguousarray(als, dtype=np.float32), np.ascontiguousarray(popularity, dtype=np.float32),
        recent[0].astype(np.int32, copy=False), recent[1].astype(np.float32, copy=False),
        history[0].astype(np.int32, copy=False), history[1].astype(np.float32, copy=False),
        neighbour_index, neighbour_score, session_neighbours[0].astype(np.int32, copy=False),
        session_neighbours[1].astype(np.float32, copy=False), sequence[0].astype(np.int32, copy=False),
        sequence[1].astype(np.float32, copy=False), weights.get("als", 0.0),
        weights.get("popularity", 0.0), weights.get("recent", 0.0), weights.get("history", 0.0),
        weights.get("neighbours", 0.0), weights.get("session_neighbours", 0.0), weights.get("sequence", 0.0)))


def blend_scores(weights: Mapping[str, float], **signals: tuple[np.ndarray, np.ndarray] | np.ndarray) -> np.ndarray:
    """``blend``'s scores alone (its arguments)."""
    return blend(weights, **signals).scores  # type: ignore[arg-type]


@njit(cache=True, nogil=True)
def _worse(score_a: float, item_a: int, score_b: float, item_b: int) -> bool:
    """Ranking order: higher score first, the lower index first among equals."""
    return score_a < score_b or (score_a == score_b and item_a > item_b)


@njit(cache=True, nogil=True)
def top_k(scores: np.ndarray, penalty: np.ndarray, excluded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the ``k`` best of ``scores + penalty``, best first, leaving out
    ``excluded`` indices and every -inf (``penalty`` is -inf for what cannot be shown).

    A min-heap of the best ``k`` so far: one pass, whatever the order of the items."""
    blocked = np.zeros(len(scores), dtype=np.bool_)
    for j in range(len(excluded)):
        blocked[excluded[j]] = True
    heap_score = np.empty(max(k, 0), dtype=np.float32)
    heap_item = np.empty(max(k, 0), dtype=np.int64)
    size = 0
    for i in range(len(scores) if k > 0 else 0):
        s = scores[i] + penalty[i]
        if blocked[i] or s == -np.inf or s != s:
            continue
        if size < k:  # sift up
            c = size
            size += 1
            while c > 0 and _worse(s, i, heap_score[(c - 1) // 2], heap_item[(c - 1) // 2]):
                heap_score[c], heap_item[c] = heap_score[(c - 1) // 2], heap_item[(c - 1) // 2]
                c = (c - 1) // 2
            heap_score[c], heap_item[c] = s, i
        elif _worse(heap_score[0], heap_item[0], s, i):  # better than the worst kept: replace it, sift down
            c = 0
            while True:
                child = 2 * c + 1
                if child >= size:
                    break
                if child + 1 < size and _worse(heap_score[child + 1], heap_item[child + 1],
                                               heap_score[child], heap_item[child]):
                    child += 1
                if not _worse(heap_score[child], heap_item[child], s, i):
                    break
                heap_score[c], heap_item[c] = heap_score[child], heap_item[child]
                c = child
            heap_score[c], heap_item[c] = s, i
    order = np.argsort(-heap_score[:size], kind="mergesort")
    items, values = heap_item[:size][order], heap_score[:size][order]
    for j in range(1, size):  # equal scores: lower index first (the heap does not keep them in order)
        m = j
        while m > 0 and values[m] == values[m - 1] and items[m] < items[m - 1]:
            items[m], items[m - 1] = items[m - 1], items[m]
            m -= 1
    return items, values


@njit(cache=True, nogil=True)
def closest_anchor(unit_factors: np.ndarray, picks: np.ndarray, anchors: np.ndarray,
                   strength: np.ndarray) -> np.ndarray:
    """For each pick, the position in ``anchors`` of the item it is most similar to (cosine of the
    factors), weighted by that anchor's ``strength``: the "because you viewed X" of a reason."""
    out = np.zeros(len(picks), dtype=np.int64)
    for p in range(len(picks)):
        best = -np.inf
        for a in range(len(anchors)):
            closeness = np.dot(unit_factors[picks[p]], unit_factors[anchors[a]]) * strength[a]
            if closeness > best:
                best, out[p] = closeness, a
    return out
