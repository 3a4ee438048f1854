"""The session signals of the for-you blend: session neighbours (models.sknn) and what follows the
visit's latest items (models.seqrules), both read from the served model's arrays."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models import seqrules, sknn

if TYPE_CHECKING:
    from engine.ranking.model import ServedModel

Signal = tuple[np.ndarray, np.ndarray]  # (item indices, weights)
NONE: Signal = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))


def session_signals(model: ServedModel, session: np.ndarray, now: float) -> tuple[Signal, Signal]:
    """(session neighbours, sequence) of the visit whose items (indices, most recent first) are
    ``session``; empty for a signal the blend does not use or the artifact lacks. The neighbours
    come from the sessions seen since training too, once ``engine.ranking.live_sessions`` added them."""
    a = model.artifact
    neighbours = sequence = NONE
    index = model.live_index if model.live_index is not None else a.session_index
    if len(session) and model.blend.get("session_neighbours") and index is not None:
        neighbours = sknn.scores(index, session, model.n_items, model.sknn, now)
    if len(session) and model.blend.get("sequence") and a.sequence_index is not None:
        sequence = seqrules.scores(a.sequence_index, a.sequence_score, session, model.rules.last_n)
    return neighbours, sequence
