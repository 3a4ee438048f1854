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


def _scaled(weights: np.ndarray) -> np.ndarray:
    """A sparse signal scaled to [0, 1] of its maximum."""
    weights = weights.astype(np.float32, copy=False)
    top = float(weights.max()) if len(weights) else 0.0
    return weights / top if top > 0 else weights


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

    ``als``: the folded-in person vector's scores. ``recent``: (distinct items, weights) from the profile,
    strongest and most recent first (the visit under way, the cart, earlier visits, purchases).
    ``history``: (distinct items, weights) of the person's training row, decayed by age. ``neighbour_*``:
    the model's item-item table (items x K, -1 padded). ``popularity``: a prior in [0, 1].

    The person's own signals touch tens of items out of thousands, so they are added sparsely: this
    runs once per request, and full-length passes over the catalogue are what it costs.
    """
    recent_items, recent_unit = recent[0], _scaled(recent[1])
    history_items, history_unit = history[0], _scaled(np.log1p(history[1]))  # counts grow: damp them

    top_als = float(als.max()) if len(als) else 0.0
    scores = (np.float32(weights.get("als", 0.0) / top_als) if top_als > 0 else np.float32(weights.get("als", 0.0))) \
        * als.astype(np.float32, copy=False)
    if weights.get("popularity"):
        scores += np.float32(weights["popularity"]) * popularity
    if weights.get("recent"):
        scores[recent_items] += np.float32(weights["recent"]) * recent_unit
    if weights.get("history"):
        scores[history_items] += np.float32(weights["history"]) * history_unit
    if weights.get("neighbours"):
        # Co-visitation: every item the person touched votes for its neighbours, by its strength
        # (an item in both signals votes twice, once per strength: the same as voting their sum).
        anchors = np.concatenate([recent_items, history_items])
        strength = np.concatenate([recent_unit, history_unit])
        index = neighbour_index[anchors]
        votes = neighbour_score[anchors] * strength[:, None]
        valid = index >= 0
        covisit = np.bincount(index[valid], weights=votes[valid], minlength=len(scores))
        top = float(covisit.max()) if len(covisit) else 0.0
        if top > 0:
            scores += np.float32(weights["neighbours"] / top) * covisit.astype(np.float32)
    return scores
