"""Reading stored profiles (a cookie forgotten by its customer's withdrawal reads as empty). Writes go
through ``engine.apply`` only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from engine import keys
from engine.profiles import CustomerProfile, VisitorProfile, current


# Values of keys, in order: a redis-py client's or ``engine.redis_reads.PipelinedReader``'s ``mget``
# (the request path's, bound to its time budget).
KeyReader = Callable[[list[str]], Awaitable[list[bytes | None]]]


async def load_profiles(read: KeyReader, visitor_id: str | None, customer_id: str | None
                        ) -> tuple[VisitorProfile, CustomerProfile | None, str | None]:
    """One round trip when the caller names the customer; two when only the cookie knows it."""
    loaded = await load_profiles_with(read, visitor_id, customer_id, ())
    return loaded.visitor, loaded.customer, loaded.customer_id


class Loaded(NamedTuple):
    visitor: VisitorProfile
    customer: CustomerProfile | None
    customer_id: str | None
    extra: list[bytes | None]  # the raw values of the extra keys asked for
    raw_visitor: bytes  # the stored bytes the profiles were decoded from (b"" for none)
    raw_customer: bytes


async def load_profiles_with(read: KeyReader, visitor_id: str | None, customer_id: str | None,
                             extra_keys: Sequence[str]) -> Loaded:
    """``load_profiles`` plus the raw values of ``extra_keys``, all in one MGET (one command costs
    the client half of what a pipeline of the same reads costs)."""
    if not visitor_id and not customer_id and not extra_keys:
        return Loaded(VisitorProfile(), None, None, [], b"", b"")
    wanted = [*([keys.visitor(visitor_id)] if visitor_id else []),
              *([keys.customer(customer_id)] if customer_id else []), *extra_keys]
    replies = await read(wanted)
    raw_visitor = replies.pop(0) if visitor_id else None
    raw_customer = replies.pop(0) if customer_id else None
    visitor = VisitorProfile.decode(raw_visitor)
    if customer_id is None and visitor.customer_id:
        customer_id = visitor.customer_id
        raw_customer = (await read([keys.customer(customer_id)]))[0]
    customer = None
    if customer_id and raw_customer:
        customer = CustomerProfile.decode(raw_customer)
    return Loaded(current(visitor, customer), customer, customer_id, replies, raw_visitor or b"", raw_customer or b"")
