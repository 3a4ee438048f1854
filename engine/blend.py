"""The for-you score: a weighted blend of signals over the whole catalogue, for one person.

ALS alone ranks what people like this person like; on real shop data it loses to simpler signals
that it smooths away: what the person did recently (people come back to what they looked at, and
wholesale customers rebuy), what is co-visited with their items, and what sells. Each signal is
scaled to [0, 1] of its own maximum and summed with weights that ``vitrine evaluate`` tunes on a
validation split (``VITRINE_BLEND``, recorded in each model artifact so a model version always
serves the blend it was trained and measured with). Pure numpy: no I/O, one call per request.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.settings import BLEND_SIGNALS

# Artifacts trained before the blend existed served ALS alone: keep serving them that way.
ALS_ONLY: dict[str, float] = {"als": 1.0}


def blend_weights(meta: Mapping[str, object]) -> dict[str, float]:
    """The weights a model artifact was trained with (ALS alone for artifacts that predate them)."""
    params = meta.get("params")
    blend = params.get("blend") if isinstance(params, Mapping) else None
    if not isinstance(blend, Mapping):
        return dict(ALS_ONLY)
    return {k: float(v) for k, v in blend.items() if k in BLEND_SIGNALS and float(v) != 0.0}


def _unit(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else values


def blend_scores(
    weights: Mapping[str, float],
    *,
    als: np.ndarray,
    recent: tuple[np.ndarray, np.ndarray],
    history: tuple[np.ndarray, np.ndarray],
    neighbour_index: np.ndarray,
    neighbour_score: np.ndarray,
    popularity: np.ndarray,
) -> np.ndarray:
    """One score per item.

    ``als``: the folded-in person vector's scores. ``recent``: (items, weights) from the profile,
    strongest and most recent first (the visit under way, the cart, earlier visits, purchases).
    ``history``: (items, weights) of the person's training row, decayed by age. ``neighbour_*``:
    the model's item-item table (items x K, -1 padded). ``popularity``: a prior in [0, 1].
    """
    n = len(als)
    recent_vec = np.zeros(n, dtype=np.float32)
    np.add.at(recent_vec, recent[0], recent[1])
    history_vec = np.zeros(n, dtype=np.float32)
    np.add.at(history_vec, history[0], np.log1p(history[1]))  # weights grow with counts: damp them
    recent_vec, history_vec = _unit(recent_vec), _unit(history_vec)

    scores = np.float32(weights.get("als", 0.0)) * _unit(als.astype(np.float32))
    if weights.get("recent"):
        scores += np.float32(weights["recent"]) * recent_vec
    if weights.get("history"):
        scores += np.float32(weights["history"]) * history_vec
    if weights.get("neighbours"):
        # Co-visitation: every item the person touched votes for its neighbours, by its strength.
        source = recent_vec + history_vec
        anchors = np.flatnonzero(source)
        index = neighbour_index[anchors]
        votes = neighbour_score[anchors] * source[anchors, None]
        valid = index >= 0
        covisit = np.zeros(n, dtype=np.float32)
        np.add.at(covisit, index[valid], votes[valid])
        scores += np.float32(weights["neighbours"]) * _unit(covisit)
    if weights.get("popularity"):
        scores += np.float32(weights["popularity"]) * popularity
    return scores
