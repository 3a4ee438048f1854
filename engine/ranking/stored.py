"""For-you lists computed when a visitor's events are applied, and served by their next requests.

The for-you blend scores the whole catalogue for one person, most of what a personalised
recommendation costs, and it was paid on every request although the list only changes
when the person does something (or the model or catalogue changes). Shops ask for it several times
per event (placements, content blocks, reloads). So, as Gorse caches its workers' lists, the applier
computes it once per applied event and stores it (``keys.for_you``) for the requests that follow.

Unlike a cache it is never stale in what it shows: each stored list carries a digest of everything
it was computed from (the stored profile bytes, the model version, the settings that shape it, and
the catalogue's growth counter: items going out of stock are dropped when the list is served, items
coming in invalidate it), and whether the visit was under way. A request digests the same inputs
as it read them and uses the list only on a match; otherwise (another write in between, a new
model, an item back in stock, the visit timed out, a customer id the cookie is not linked to) it
computes the list itself, as before. Everything else a list depends on (consent, the model's row for
the person) follows from those bytes, so a request served from a matching list never decodes the
profiles. A stored list expires with the session it was computed in: after that it cannot match.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
import struct
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple, Protocol

import msgpack
import numpy as np
from redis.asyncio import Redis

from engine import tasks

from engine.store import keys
from engine.catalog import Catalogue
from engine.ranking.model import ServedModel
from engine.profiles.shapes import VisitorProfile
from engine.ranking.request import Pick

log = logging.getLogger(__name__)

LIST_SIZE = 20  # picks stored: placements asking for more (or losing more to exclusions) compute live
NEW_SPARE = 2  # new items kept beyond a list's exploration slots, for those going out of stock
BATCH = 16  # lists computed between two turns of the event loop: what a request may wait behind
MAX_BACKLOG = 100_000  # visitors waiting for their list
# Lists are computed this long after the events that call for them: the requests a page makes
# together with its events go first (they compute theirs anyway), and a burst of events makes
# one batch. Without it, a request right after an event waited for the list being made.
SETTLE_S = 0.005


# Pick(...) runs NamedTuple's Python-level __new__: three times what building the tuple costs.
_pick = functools.partial(tuple.__new__, Pick)


class Visit(NamedTuple):
    """Where the person's visit stood when their list was computed."""
    under_way: bool
    last_seen: int | None  # None: no visit yet

    @classmethod
    def of(cls, visitor: VisitorProfile, now: float, session_timeout_s: float) -> Visit:
        return cls(visitor.in_session(now, session_timeout_s), round(visitor.last_seen) if visitor.visits else None)

    def holds(self, now: float, session_timeout_s: float) -> bool:
        """Still so at ``now`` (the visit's items weigh differently once it is over): the test of
        ``VisitorProfile.in_session``, on what the list kept of the profile."""
        return self.under_way == (self.last_seen is not None and now - self.last_seen <= session_timeout_s)


class Stored(NamedTuple):  # a tuple, not a dataclass: one is decoded per request
    items: tuple[int, ...]  # model indices, best first
    scores: tuple[float, ...]
    reason_ids: bytes  # per pick, a position in the (prefix, item index) pairs of ``anchors``
    prefixes: list[str]
    anchors: list[int]  # flat pairs: a position in ``prefixes``, then a model index or -1
    complete: bool  # the catalogue had no more candidates than these
    # Exploration (engine.ranking.scenarios.new_for_person): the new items alike the person's, best
    # first, as (item, reason); ``new_complete``: no other new item qualified.
    new: Sequence[tuple[str, str]] = ()
    new_complete: bool = True
    new_window: str = ""  # which new items were compared (scenarios.exploration_window)

    def serve(self, item_ids: list[str], available: bytes, excluded: set[str], n: int) -> list[Pick] | None:
        """``for_you``'s first ``n`` picks, or None if the list is too short to know them.

        It was ranked with the profile's own exclusions, among the items available then. A request
        may exclude more (the picks of a placement's earlier scenarios), and items may have gone
        out of stock since (none came in: ``Catalogue.grown`` is in the digest). Dropping those
        keeps the rest in the live order, so the first ``n`` left are the live answer, if ``n``
        are left or the catalogue had no more."""
        picks: list[Pick] = []
        if n <= 0:
            return picks
        prefixes, anchors = self.prefixes, self.anchors
        reasons: list[str | None] = [None] * (len(anchors) // 2)  # a few anchors recur: each built once
        for i, score, r in zip(self.items, self.scores, self.reason_ids):
            if available[i] and (item := item_ids[i]) not in excluded:
                reason = reasons[r]
                if reason is None:
                    prefix, anchor = prefixes[anchors[2 * r]], anchors[2 * r + 1]
                    reason = reasons[r] = prefix if anchor < 0 else f"{prefix}:{item_ids[anchor]}"
                picks.append(_pick((item, score, reason)))
                if len(picks) == n:
                    return picks
        return picks if self.complete else None

    def new_items(self, available: Callable[[str], bool], k: int) -> list[tuple[str, str]] | None:
        """The first ``k`` new items still ``available``: what exploring live would pick, since
        none has come in since (``Catalogue.grown`` is in the digest); None if too few are kept
        to know them."""
        picked = [pair for pair in self.new if available(pair[0])][:k]
        return picked if len(picked) == k or self.new_complete else None


def digest(model: ServedModel, catalogue: Catalogue, config: str, customer_id: str | None,
           raw_visitor: bytes, raw_customer: bytes) -> bytes:
    """What a list was computed from, but for the time (``Visit``); equal digests mean the live
    computation gives the same list. ``config`` holds the settings that shape a list, consent's
    among them: with those, the profile bytes decide whether the person may have one at all."""
    stamp = hashlib.blake2b(f"{model.version}|{catalogue.grown}|{config}|{customer_id or ''}|{len(raw_visitor)}|"
                            .encode(), digest_size=8)
    stamp.update(raw_visitor)
    stamp.update(raw_customer)
    return stamp.digest()


def encode(stamp: bytes, visit: Visit, picks: list[Pick], complete: bool, model: ServedModel,
           new: Sequence[tuple[str, str]] = (), new_complete: bool = True, new_window: str = "") -> bytes:
    """Compact, as it is kept per visitor on the site: item indices (16-bit while the model has
    fewer than 65,536 items) and float32 scores as arrays; reasons as a table of (prefix, item)
    pairs, since a few anchors recur: ``because_you_viewed:85123A`` is the prefix
    ``because_you_viewed`` and the model index of ``85123A``."""
    width = "<u2" if len(model.item_ids) < 2**16 else "<i4"
    prefixes: dict[str, int] = {}
    anchors: dict[tuple[int, int], int] = {}
    reason_ids = bytearray()
    for pick in picks:
        prefix, _, item = pick.reason.partition(":")
        index = model.item_index.get(item, -1) if item else -1
        if index < 0:
            prefix = pick.reason
        anchor = (prefixes.setdefault(prefix, len(prefixes)), index)
        reason_ids.append(anchors.setdefault(anchor, len(anchors)))
    items = np.array([model.item_index[p.item_id] for p in picks], dtype=width).tobytes()
    scores = np.array([p.score for p in picks], dtype="<f4").tobytes()
    return msgpack.packb([stamp, complete, items, scores, bytes(reason_ids), list(prefixes),
                          [i for anchor in anchors for i in anchor], [i for pair in new for i in pair],
                          new_complete, new_window, *visit])


def decode(raw: bytes | None, stamp: bytes, now: float, session_timeout_s: float) -> Stored | None:
    """The stored list if it was computed from what ``stamp`` digests, in the same state of the
    visit as at ``now``; else None."""
    if not raw:
        return None
    try:
        stored_stamp, complete, items, scores, reason_ids, prefixes, anchors, new, new_complete, new_window, \
            *visit = msgpack.unpackb(raw)
        if stored_stamp != stamp or not Visit(*visit).holds(now, session_timeout_s):
            return None
        k = len(reason_ids)
        indices = struct.unpack(f"<{k}{'H' if len(items) == 2 * k else 'i'}", items)
        return Stored(indices, struct.unpack(f"<{k}f", scores), reason_ids, prefixes, anchors, bool(complete),
                      tuple(zip(new[::2], new[1::2])) if new else (), bool(new_complete), new_window)
    except (ValueError, TypeError, IndexError, struct.error):  # not a list of ours: compute live
        return None


class PersonalLists(Protocol):
    async def for_you_list(self, visitor_id: str, n: int) -> bytes | None:
        """The encoded list of the visitor's first ``n`` for-you picks, or None if they get none."""


class Precomputer:
    """Computes and stores the lists of visitors whose events were just applied, in the background:
    the events' writer (and so the event POST, or a worker's offset commit) never waits for them.
    Visitors marked again before their turn get one list, from their latest profile. Only
    processes that serve a model have one."""

    def __init__(self, lists: PersonalLists, redis: Redis, ttl_s: int) -> None:
        self._lists = lists
        self._redis = redis
        self._ttl_s = ttl_s
        self._dirty: dict[str, None] = {}  # insertion-ordered set: first marked, first computed
        self._task: asyncio.Task[None] | None = None

    def mark(self, visitor_ids: Collection[str]) -> None:
        if len(self._dirty) < MAX_BACKLOG:  # beyond it, requests compute those lists themselves
            self._dirty.update(dict.fromkeys(visitor_ids))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="vitrine-for-you-lists")

    async def flush(self) -> None:
        """Wait until every marked visitor's list is stored (or has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Store what is marked (a withdrawal's deletion among it) for up to ``timeout_s``, then stop."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout_s)
            await tasks.stop(self._task)

    async def _drain(self) -> None:
        await asyncio.sleep(SETTLE_S)
        while self._dirty:
            batch = list(itertools.islice(self._dirty, BATCH))
            for vid in batch:
                del self._dirty[vid]
            try:
                await self.refresh(batch)
            except Exception as exc:  # noqa: BLE001 - these visitors' requests compute their lists
                log.warning("storing for-you lists of %d visitors failed (%s: %s)", len(batch),
                            type(exc).__name__, exc)

    async def refresh(self, visitor_ids: list[str]) -> None:
        """One pipelined read per visitor, one pipelined write for all."""
        computed = await asyncio.gather(*(self._lists.for_you_list(vid, LIST_SIZE) for vid in visitor_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for vid, value in zip(visitor_ids, computed):
                if value is None:  # not personalised (withdrawn, no model): keep nothing
                    pipe.delete(keys.for_you(vid))
                else:
                    pipe.set(keys.for_you(vid), value, ex=self._ttl_s)
            await pipe.execute()
