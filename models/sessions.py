"""A log of events cut into sessions: what session-based recommenders learn from.

A session is one visitor's run of events with no gap longer than ``gap_s`` (30 minutes, as the
profiles count visits and as session-based research splits user logs). Only events with a positive
training weight count, and consecutive events on the same item (a view, then the cart, then the
order of one product) are one step: "what comes next" is a different item.

Sessions are numbered in the order they ended, so a higher number is a more recent session (the
session-kNN index, ``models.sknn``, relies on it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from models.rows import Interaction

SESSION_GAP_S = 1800.0


@dataclass
class SessionLog:
    """Sessions as a CSR of item indices: session ``s`` is ``items[indptr[s]:indptr[s + 1]]``."""

    indptr: np.ndarray  # int64 (sessions + 1,)
    items: np.ndarray  # int32, each session's steps in order
    last_ts: np.ndarray  # float64 (sessions,): when each session ended, ascending

    def __len__(self) -> int:
        return len(self.last_ts)

    def steps(self, s: int) -> np.ndarray:
        return self.items[self.indptr[s]:self.indptr[s + 1]]

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.items.nbytes + self.last_ts.nbytes)


def runs(rows: Iterable[Interaction], gap_s: float = SESSION_GAP_S) -> list[list[Interaction]]:
    """Each visitor's rows (in time order) cut where they were idle for more than ``gap_s``; the
    sessions in the order they ended."""
    by_visitor: dict[str, list[Interaction]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.ts):
        by_visitor[r.visitor_id].append(r)
    out: list[list[Interaction]] = []
    for visitor_rows in by_visitor.values():
        current: list[Interaction] = []
        for r in visitor_rows:
            if current and r.ts - current[-1].ts > gap_s:
                out.append(current)
                current = []
            current.append(r)
        if current:
            out.append(current)
    out.sort(key=lambda s: (s[-1].ts, s[0].visitor_id))
    return out


def collapse(items: Iterable[str]) -> list[str]:
    """Consecutive repeats of one item as one step."""
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return out


def split_sessions(rows: Iterable[Interaction], item_index: Mapping[str, int], weights: Mapping[str, float],
                   gap_s: float = SESSION_GAP_S) -> SessionLog:
    """The sessions of ``rows`` over the items of ``item_index`` (others are left out), those with at
    least one step."""
    kept = [r for r in rows if weights.get(r.event_type, 0.0) > 0 and r.item_id in item_index]
    indptr, items, last_ts = [0], [], []
    for session in runs(kept, gap_s):
        steps = collapse(r.item_id for r in session)
        items.extend(item_index[i] for i in steps)
        indptr.append(len(items))
        last_ts.append(session[-1].ts)
    return SessionLog(np.asarray(indptr, dtype=np.int64), np.asarray(items, dtype=np.int32),
                      np.asarray(last_ts, dtype=np.float64))


def anonymous(rows: Iterable[Interaction], gap_s: float = SESSION_GAP_S) -> list[Interaction]:
    """The same events with each session as its own anonymous visitor (``<visitor>~<n>``, no
    customer): a user-level log as a session dataset, where nobody's past is known."""
    out: list[Interaction] = []
    for n, session in enumerate(runs(rows, gap_s)):
        out.extend(r._replace(visitor_id=f"{r.visitor_id}~{n}", customer_id=None) for r in session)
    out.sort(key=lambda r: r.ts)
    return out


def recent_distinct(items: Iterable[str] | Iterable[int], limit: int | None) -> list:
    """The distinct items of a sequence given oldest first, most recent first, at most ``limit``."""
    out = list(dict.fromkeys(reversed(list(items))))
    return out if limit is None else out[:limit]
