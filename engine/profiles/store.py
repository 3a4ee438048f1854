"""Reading stored profiles (a cookie forgotten by its customer's withdrawal reads as empty). Writes go
through ``engine.ingest.apply`` only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import Any

from engine.store import keys
from engine.profiles.codec import decode_dict
from engine.profiles.consent import current
from engine.profiles.shapes import CustomerProfile, VisitorProfile


# Values of keys, in order: a redis-py client's or ``engine.store.reads.PipelinedReader``'s ``mget``
# (the request path's, bound to its time budget).
KeyReader = Callable[[list[str]], Awaitable[list[bytes | None]]]


async def load_profiles(read: KeyReader, visitor_id: str | None, customer_id: str | None
                        ) -> tuple[VisitorProfile, CustomerProfile | None, str | None]:
    """One round trip when the caller names the customer; two when only the cookie knows it."""
    loaded = await load_profiles_with(read, visitor_id, customer_id, ())
    return loaded.visitor, loaded.customer, loaded.customer_id


class Loaded:
    """What one read found, decoded on first use: a request served from a stored list
    (``engine.ranking.stored``) only digests the bytes, and decoding was a tenth of its CPU."""

    def __init__(self, customer_id: str | None, extra: list[bytes | None], raw_visitor: bytes = b"",
                 raw_customer: bytes = b"", visitor_data: dict[str, Any] | None = None,
                 raw_preferences: list[bytes] | None = None) -> None:
        self.customer_id = customer_id
        self.extra = extra  # the raw values of the extra keys asked for
        self.raw_preferences = raw_preferences or []  # the person's declared preferences records found
        self.raw_visitor = raw_visitor  # the stored bytes (b"" for none)
        self.raw_customer = raw_customer
        self._visitor_data = visitor_data  # raw_visitor unpacked, if it was (to find its customer)

    @cached_property
    def customer(self) -> CustomerProfile | None:
        return CustomerProfile.decode(self.raw_customer) if self.customer_id and self.raw_customer else None

    @cached_property
    def visitor(self) -> VisitorProfile:
        data = self._visitor_data if self._visitor_data is not None else decode_dict(self.raw_visitor)
        return current(VisitorProfile.from_stored(data), self.customer)


async def load_profiles_with(read: KeyReader, visitor_id: str | None, customer_id: str | None,
                             extra_keys: Sequence[str], preferences: bool = False) -> Loaded:
    """``load_profiles`` plus the raw values of ``extra_keys``, all in one MGET (one command costs
    the client half of what a pipeline of the same reads costs). ``preferences``: the cookie's and
    the customer's declared preferences too (engine.profiles.preferences), in the same reads. A
    customer id without a profile costs one more read, for its alias: a merged-away id reads as the
    customer it was merged into."""
    if not visitor_id and not customer_id and not extra_keys:
        return Loaded(None, [])
    wanted = [keys.visitor(visitor_id)] if visitor_id else []
    if customer_id:
        wanted.append(keys.customer(customer_id))
    wanted += extra_keys
    if preferences:
        if visitor_id:
            wanted.append(keys.visitor_preferences(visitor_id))
        if customer_id:
            wanted.append(keys.customer_preferences(customer_id))
    replies = await read(wanted)
    raw_visitor = replies.pop(0) if visitor_id else None
    raw_customer = replies.pop(0) if customer_id else None
    raw_prefs = replies[len(extra_keys):]
    del replies[len(extra_keys):]
    visitor_data = None
    if customer_id is None and VisitorProfile.maybe_linked(raw_visitor):
        visitor_data = decode_dict(raw_visitor)
        if customer_id := VisitorProfile.customer_of(visitor_data):
            raw_customer = await _customer(read, customer_id, preferences, raw_prefs)
    if customer_id and not raw_customer:  # merged into another (engine.customers.merge), or new
        target = (await read([keys.alias(customer_id)]))[0]
        if target:
            customer_id = target.decode()
            raw_customer = await _customer(read, customer_id, preferences, raw_prefs)
    return Loaded(customer_id, replies, raw_visitor or b"", raw_customer or b"", visitor_data,
                  [r for r in raw_prefs if r])


async def _customer(read: KeyReader, customer_id: str, preferences: bool, raw_prefs: list[bytes | None]
                    ) -> bytes | None:
    """A customer's profile, read after the first MGET named them; their preferences join ``raw_prefs``."""
    raw, *more = await read([keys.customer(customer_id), *([keys.customer_preferences(customer_id)]
                                                            if preferences else [])])
    raw_prefs.extend(more)
    return raw
