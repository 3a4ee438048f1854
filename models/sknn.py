"""Session-based nearest neighbours: V-SKNN (Ludewig & Jannach 2018) over a bounded index of
recent sessions per item, as VMIS-kNN (Kersbergen et al. 2022, bol.com's Serenade) serves it.

The index, built at training time, keeps for every item the ``per_item`` most recent sessions that
contain it. For the session under way (its distinct items, most recent first):

1. every indexed session sharing an item is a candidate; the ``sample`` most recent are kept;
2. a candidate's similarity is the sum of the position weights of the items it shares, the latest
   item weighing 1 and the first 1/L (V-SKNN's "div" weighting, a dot product with the session
   as a decaying vector), divided by L; optionally decayed by the candidate's age (STAN);
3. the ``k`` most similar candidates vote for each of their items with their similarity, divided
   by the recency rank of the latest item they share with the session (V-SKNN's "div" score),
   optionally raised by the item's IDF.

All of it is compiled (numba) and reads flat arrays only: a request costs time in proportion to
the postings of the session's items (at most L x ``per_item``), not to the number of sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from models.sessions import SessionLog


@dataclass(frozen=True)
class SknnParams:
    """Defaults sized for serving (tens of µs a request); ``PAPER`` is V-SKNN as published."""

    k: int = 50  # neighbours that vote
    sample: int = 100  # most recent candidate sessions considered
    per_item: int = 100  # sessions indexed per item (memory bound; >= sample keeps V-SKNN's candidates)
    session_items: int | None = 50  # a session's last steps indexed (bounds a vote's cost); None: all
    last_n: int = 10  # distinct session items used, most recent first
    half_life_s: float = 0.0  # age at which a neighbour's vote halves; 0: no decay
    idf_weight: float = 0.0  # vote * (1 + idf_weight * idf(item)); 0: off


# session-rec's V-SKNN: 100 neighbours among the 500 most recent sessions sharing an item.
PAPER = SknnParams(k=100, sample=500, per_item=500, session_items=None)


@dataclass
class SessionIndex:
    """The sessions (distinct items each) and, per item, its most recent sessions."""

    session_indptr: np.ndarray  # int64 (sessions + 1,)
    session_items: np.ndarray  # int32
    session_ts: np.ndarray  # float64 (sessions,): end time, ascending
    item_indptr: np.ndarray  # int64 (items + 1,)
    item_sessions: np.ndarray  # int32: per item, session numbers, most recent first
    idf: np.ndarray  # float32 (items,): log(sessions / sessions with the item), 0 if none

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.session_indptr, self.session_items, self.session_ts,
                                          self.item_indptr, self.item_sessions, self.idf)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SessionIndex":
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})


def build_index(log: SessionLog, n_items: int, per_item: int, session_items: int | None = None) -> SessionIndex:
    """The index of ``log`` (sessions numbered by end time, as ``models.sessions`` makes them), each
    session's last ``session_items`` steps (all if None)."""
    lengths = np.diff(log.indptr)
    owner = np.repeat(np.arange(len(log), dtype=np.int64), lengths)
    steps = log.items.astype(np.int64)
    if session_items is not None:
        from_end = np.repeat(log.indptr[1:], lengths) - np.arange(len(log.items))
        owner, steps = owner[from_end <= session_items], steps[from_end <= session_items]
    # Distinct (session, item) pairs, by item and then most recent session first.
    pairs = np.unique(owner * max(n_items, 1) + steps)
    session_of, item_of = pairs // max(n_items, 1), (pairs % max(n_items, 1)).astype(np.int32)
    counts = np.bincount(session_of, minlength=len(log))
    session_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order = np.lexsort((-session_of, item_of))
    by_item, sessions = item_of[order], session_of[order].astype(np.int32)
    per = np.bincount(by_item, minlength=n_items)
    starts = np.concatenate([[0], np.cumsum(per)])
    rank = np.arange(len(by_item)) - starts[by_item]
    keep = rank < per_item
    item_counts = np.bincount(by_item[keep], minlength=n_items)
    idf = np.where(per > 0, np.log(max(len(log), 1) / np.maximum(per, 1)), 0.0).astype(np.float32)
    return SessionIndex(session_indptr, item_of, log.last_ts.astype(np.float64),
                        np.concatenate([[0], np.cumsum(item_counts)]).astype(np.int64), sessions[keep], idf)


@njit(cache=True, nogil=True)
def _scores(item_indptr: np.ndarray, item_sessions: np.ndarray, session_indptr: np.ndarray,
            session_items: np.ndarray, session_ts: np.ndarray, idf: np.ndarray, query: np.ndarray,
            n_items: int, k: int, sample: int, now: float, half_life_s: float,
            idf_weight: float) -> tuple[np.ndarray, np.ndarray]:
    n_query = len(query)
    # Candidates, most recent first: a merge of the query items' postings (each most recent first),
    # stopped at ``sample`` distinct sessions. A session's similarity sums the position weights of
    # the query items it holds; ``latest`` is the recency rank of the most recent of them.
    head = np.empty(n_query, dtype=np.int64)
    stop = np.empty(n_query, dtype=np.int64)
    for r in range(n_query):
        head[r], stop[r] = item_indptr[query[r]], item_indptr[query[r] + 1]
    cand = np.empty(sample, dtype=np.int64)
    sims = np.empty(sample, dtype=np.float64)
    latest = np.empty(sample, dtype=np.int64)
    n_cand = 0
    while n_cand < sample:
        s = -1
        for r in range(n_query):
            if head[r] < stop[r] and item_sessions[head[r]] > s:
                s = item_sessions[head[r]]
        if s < 0:
            break
        sim = 0.0
        best = n_query
        for r in range(n_query):
            if head[r] < stop[r] and item_sessions[head[r]] == s:
                sim += (n_query - r) / n_query
                best = min(best, r)
                head[r] += 1
        sim /= n_query
        if half_life_s > 0:
            sim *= 0.5 ** (max(now - session_ts[s], 0.0) / half_life_s)
        cand[n_cand], sims[n_cand], latest[n_cand] = s, sim, best
        n_cand += 1
    if n_cand == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    # The k most similar; among equals, the more recent (candidates are in that order).
    if n_cand > k:
        threshold = np.partition(sims[:n_cand], n_cand - k)[n_cand - k]
        order = np.empty(k, dtype=np.int64)
        n_order = 0
        for o in range(n_cand):
            if sims[o] > threshold:
                order[n_order] = o
                n_order += 1
        for o in range(n_cand):
            if n_order < k and sims[o] == threshold:
                order[n_order] = o
                n_order += 1
    else:
        order = np.arange(n_cand)
    size = 0
    for o in order:
        size += session_indptr[cand[o] + 1] - session_indptr[cand[o]]
    acc = np.zeros(n_items, dtype=np.float32)
    is_touched = np.zeros(n_items, dtype=np.bool_)
    touched = np.empty(size, dtype=np.int32)
    n_touched = 0
    for o in order:
        s = cand[o]
        vote = sims[o] / (latest[o] + 1)
        for p in range(session_indptr[s], session_indptr[s + 1]):
            item = session_items[p]
            if not is_touched[item]:
                is_touched[item] = True
                touched[n_touched] = item
                n_touched += 1
            acc[item] += vote * (1.0 + idf_weight * idf[item]) if idf_weight > 0 else vote
    items = touched[:n_touched].copy()
    values = np.empty(n_touched, dtype=np.float32)
    for j in range(n_touched):
        values[j] = acc[items[j]]
    return items, values


def scores(index: SessionIndex, query: np.ndarray, n_items: int, params: SknnParams,
           now: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(items, votes) for the session whose distinct items, most recent first, are ``query``
    (item indices; at most ``params.last_n`` are used)."""
    query = np.ascontiguousarray(query[:params.last_n], dtype=np.int32)
    return _scores(index.item_indptr, index.item_sessions, index.session_indptr, index.session_items,
                   index.session_ts, index.idf, query, n_items, params.k, params.sample, float(now),
                   float(params.half_life_s), float(params.idf_weight))


def extend(index: SessionIndex, log: SessionLog, n_items: int, per_item: int,
           session_items: int | None = None) -> SessionIndex:
    """``index`` with the sessions of ``log`` added after its own (they must have ended later):
    each item's postings keep its ``per_item`` most recent sessions, old or new. The IDF stays the
    trained one (new sessions are few next to the trained ones)."""
    added = build_index(log, n_items, per_item, session_items)
    offset = len(index.session_ts)
    items = np.concatenate([np.repeat(np.arange(n_items, dtype=np.int64), np.diff(added.item_indptr)),
                            np.repeat(np.arange(n_items, dtype=np.int64), np.diff(index.item_indptr))])
    sessions = np.concatenate([added.item_sessions.astype(np.int64) + offset, index.item_sessions])
    order = np.lexsort((-sessions, items))  # by item, most recent session first
    items, sessions = items[order], sessions[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=n_items))])
    keep = np.arange(len(items)) - starts[items] < per_item
    counts = np.bincount(items[keep], minlength=n_items)
    return SessionIndex(
        np.concatenate([index.session_indptr, index.session_indptr[-1] + added.session_indptr[1:]]),
        np.concatenate([index.session_items, added.session_items]),
        np.concatenate([index.session_ts, added.session_ts]),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), sessions[keep].astype(np.int32), index.idf)
