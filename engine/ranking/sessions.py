"""The session signals of the for-you blend, and the sessions seen since training that feed them.

Session neighbours (models.sknn) and what follows the visit's latest items (models.seqrules) are
read from the served model's arrays. `vitrine train` indexes the sessions of its data; the visitors
who came since are the neighbours that matter most now. The process that applies events (the
embedded server, a Kafka worker) observes each product event; every
``VITRINE_LIVE_SESSIONS_REFRESH_S`` the sessions it saw since the model's data ended are added to a
copy of the model's index (models.sknn.extend), which the model then serves. Memory is bounded: the
newest ``max_sessions`` sessions (finished or under way), each its last ``max_steps`` steps; visitor
ids stay here, the index holds items only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping

import numpy as np

from engine.events.schema import Event
from engine.ranking.model import ServedModel
from models import seqrules, sknn
from models.repeats import repeat_scores
from models.sessions import SessionLog, collapse


Signal = tuple[np.ndarray, np.ndarray]  # (item indices, weights)
NONE: Signal = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))


def session_signals(model: ServedModel, session: np.ndarray, now: float) -> tuple[Signal, Signal]:
    """(session neighbours, sequence) of the visit whose items (indices, most recent first) are
    ``session``; empty for a signal the blend does not use or the artifact lacks. The neighbours
    come from the sessions seen since training too, once ``LiveSessions`` added them."""
    a = model.artifact
    neighbours = sequence = NONE
    index = model.live_index if model.live_index is not None else a.session_index
    if len(session) and model.blend.get("session_neighbours") and index is not None:
        neighbours = sknn.scores(index, session, model.n_items, model.sknn, now)
    if len(session) and model.blend.get("sequence") and a.sequence_index is not None:
        sequence = seqrules.scores(a.sequence_index, a.sequence_score, session, model.rules.last_n)
    return neighbours, sequence


def repeat_signal(model: ServedModel, session: np.ndarray) -> Signal:
    """The visit's own items (indices, most recent first) weighted by how often the shop's visits
    go back to an item that far back (models.repeats); empty when the blend does not use it."""
    if not len(session) or not model.blend.get("repeat") or not len(model.repeat_curve):
        return NONE
    return repeat_scores(model.repeat_curve, session)


class LiveSessions:
    def __init__(self, weights: Mapping[str, float], gap_s: float, max_sessions: int, max_steps: int = 50) -> None:
        self._weights = dict(weights)
        self._gap_s = gap_s
        self._max_sessions = max_sessions
        self._max_steps = max_steps
        self._open: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()  # visitor -> (last ts, items)
        self._closed: deque[tuple[float, list[str]]] = deque(maxlen=max_sessions)
        self._lock = threading.Lock()  # observed on the event loop, read by the refresh thread

    def observe(self, events: Iterable[Event]) -> None:
        """Add the product events of a visitor who did not opt out (GPC) to their session under way."""
        with self._lock:
            for e in events:
                if e.item_id is None or e.gpc or self._weights.get(e.type, 0.0) <= 0:
                    continue
                last_ts, items = self._open.pop(e.visitor_id, (e.ts, []))
                if e.ts - last_ts > self._gap_s:
                    self._closed.append((last_ts, items))
                    last_ts, items = e.ts, []
                if not items or items[-1] != e.item_id:
                    items.append(e.item_id)
                    del items[:-self._max_steps]
                self._open[e.visitor_id] = (max(last_ts, e.ts), items)
                if len(self._open) > self._max_sessions:  # the longest idle visit is closed early
                    self._closed.append(self._open.popitem(last=False)[1])

    def sessions(self, since: float) -> list[tuple[float, list[str]]]:
        """The sessions that ended (or were last active) after ``since``, oldest first, at most
        ``max_sessions``."""
        with self._lock:
            found = [s for s in (*self._closed, *self._open.values()) if s[0] > since]
        found.sort(key=lambda s: s[0])
        return [(ts, list(items)) for ts, items in found[-self._max_sessions:]]

    def refresh(self, model: ServedModel | None) -> int:
        """Give ``model`` its index with the sessions seen since its data ended; how many were added."""
        if model is None or model.artifact.session_index is None or not model.blend.get("session_neighbours"):
            return 0
        since = float(model.artifact.meta.get("data", {}).get("last_event", 0.0))
        indptr, steps, ends = [0], [], []
        for ts, items in self.sessions(since):
            known = collapse(i for i in items if i in model.item_index)
            if known:
                steps.extend(model.item_index[i] for i in known)
                indptr.append(len(steps))
                ends.append(ts)
        if not ends:
            return 0
        log = SessionLog(np.asarray(indptr, dtype=np.int64), np.asarray(steps, dtype=np.int32),
                         np.asarray(ends, dtype=np.float64))
        model.live_index = sknn.extend(model.artifact.session_index, log, model.n_items, model.sknn.per_item,
                                       model.sknn.session_items)
        return len(ends)
