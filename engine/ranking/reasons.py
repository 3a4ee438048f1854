"""Which blend signal put an item in a for-you list: the one that added most to its score.

A reason must say why the item ranked: under a popularity-only blend a best seller is ``popular``,
not ``because_you_viewed:X`` for whichever viewed item happens to be nearest. The blend's kernel
(``engine.ranking.blend``) sums the signals over every item in one compiled pass and keeps no
terms; here the same terms are recomputed, in numpy, for the few items shown only, but for the
co-visitation votes, the costliest, which the blend hands over (``Signals.votes``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.ranking.blend import covisit_votes


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
    repeat: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int32), np.zeros(0, np.float32))
    votes: tuple[np.ndarray, np.ndarray] | None = None  # the blend's (covisit, voter); None: count them here


def _unit(weights: np.ndarray, damp: bool) -> np.ndarray:
    values = np.log1p(weights) if damp else weights.astype(np.float32, copy=False)
    top = float(values.max(initial=0.0))
    return values / top if top > 0 else values


def _votes(s: Signals) -> tuple[np.ndarray, np.ndarray]:
    """Per item, its co-visitation votes and the person's item that cast the largest
    (``engine.ranking.blend.covisit_votes``): the blend's, or counted the same way."""
    if s.votes is not None and len(s.votes[0]):
        return s.votes
    covisit, voter, _ = covisit_votes(
        s.recent[0].astype(np.int32, copy=False), _unit(s.recent[1], False).astype(np.float32, copy=False),
        s.history[0].astype(np.int32, copy=False), _unit(s.history[1], True).astype(np.float32, copy=False),
        s.neighbour_index, s.neighbour_score, len(s.als))
    return covisit, voter


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
                                         ("sequence", s.sequence, False), ("repeat", s.repeat, False)):
        if not w.get(name, 0.0):  # a zero term, as the blend leaves it
            terms[name] = np.zeros(len(picks), dtype=np.float32)
            continue
        dense = np.zeros(n, dtype=np.float32)
        dense[items] = _unit(weights, damp)
        terms[name] = w[name] * dense[picks]
    w_neighbours = w.get("neighbours", 0.0)
    if w_neighbours:
        covisit, _ = _votes(s)
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
    if not items:
        return {}
    _, voter = _votes(s)
    return {item: int(voter[item]) for item in items if voter[item] >= 0}
