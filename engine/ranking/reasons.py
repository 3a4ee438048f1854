"""Which blend signal put an item in a for-you list: the one that added most to its score.

A reason must say why the item ranked: under a popularity-only blend a best seller is ``popular``,
not ``because_you_viewed:X`` for whichever viewed item happens to be nearest. The blend's kernel
(``engine.ranking.blend``) sums the signals over every item in one compiled pass and keeps no
terms; here the same terms are recomputed, in numpy, for the few items shown only. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Signals:
    """The inputs of one person's blend (``engine.ranking.blend.blend_scores``' arguments)."""

    weights: Mapping[str, float]
    als: np.ndarray  # (items,)
    popularity: np.ndarray  # (items,)
    recent: tuple[np.ndarray, np.ndarray]  # distinct items, weights
    history: tuple[np.ndarray, np.ndarray]
    neighbour_index: np.ndarray  # (items, K), -1 padded
    neighbour_score: np.ndarray
    session_neighbours: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int32), np.zeros(0, np.float32))
    sequence: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int32), np.zeros(0, np.float32))


def _unit(weights: np.ndarray, damp: bool) -> np.ndarray:
    values = np.log1p(weights) if damp else weights.astype(np.float32, copy=False)
    top = float(values.max(initial=0.0))
    return values / top if top > 0 else values


def _votes(s: Signals) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every co-visitation vote of the person's items: (anchor item, voted item, vote) triples."""
    anchors = np.concatenate([s.recent[0], s.history[0]]).astype(np.int64)
    strength = np.concatenate([_unit(s.recent[1], False), _unit(s.history[1], True)])
    if not len(anchors):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    rows = s.neighbour_index[anchors]
    votes = s.neighbour_score[anchors] * strength[:, None]
    valid = rows >= 0
    return np.broadcast_to(anchors[:, None], rows.shape)[valid], rows[valid].astype(np.int64), votes[valid]


def contributions(s: Signals, picks: np.ndarray) -> dict[str, np.ndarray]:
    """Each signal's term in each pick's blended score, as the blend adds them."""
    w, n = s.weights, len(s.als)
    terms: dict[str, np.ndarray] = {}
    top_als = float(s.als.max()) if n else 0.0
    w_als = w.get("als", 0.0)
    terms["als"] = (w_als / top_als if top_als > 0 else w_als) * s.als[picks]
    terms["popularity"] = w.get("popularity", 0.0) * s.popularity[picks]
    for name, (items, weights), damp in (("recent", s.recent, False), ("history", s.history, True),
                                         ("session_neighbours", s.session_neighbours, False),
                                         ("sequence", s.sequence, False)):
        dense = np.zeros(n, dtype=np.float32)
        dense[items] = _unit(weights, damp)
        terms[name] = w.get(name, 0.0) * dense[picks]
    w_neighbours = w.get("neighbours", 0.0)
    if w_neighbours:
        _, voted, votes = _votes(s)
        covisit = np.bincount(voted, weights=votes, minlength=n)
        top = float(covisit.max(initial=0.0))
        terms["neighbours"] = w_neighbours * covisit[picks] / top if top > 0 else np.zeros(len(picks))
    return terms


def dominant(s: Signals, picks: np.ndarray) -> list[str | None]:
    """For each pick, the signal with the largest term (None when no signal added anything)."""
    terms = contributions(s, picks)
    names = list(terms)
    stacked = np.vstack([terms[name] for name in names]) if len(picks) else np.zeros((len(names), 0))
    best = stacked.argmax(axis=0)
    return [names[b] if stacked[b, p] > 0 else None for p, b in enumerate(best.tolist())]


def strongest_voters(s: Signals, items: list[int]) -> dict[int, int]:
    """For each of ``items``, the person's item whose co-visitation vote for it was the largest."""
    anchors, voted, votes = _votes(s)
    out = {}
    for item in items:
        hits = np.flatnonzero(voted == item)
        if len(hits):
            out[item] = int(anchors[hits[np.argmax(votes[hits])]])
    return out
