"""Reading (and erasing) stored profiles. Writes go through ``engine.apply`` only."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from redis.asyncio import Redis

from engine import keys
from engine.profiles import CustomerProfile, VisitorProfile


async def load_profiles(redis: Redis, visitor_id: str | None, customer_id: str | None
                        ) -> tuple[VisitorProfile, CustomerProfile | None, str | None]:
    """One round trip when the caller names the customer; two when only the cookie knows it."""
    visitor, customer, customer_id, _ = await load_profiles_with(redis, visitor_id, customer_id, ())
    return visitor, customer, customer_id


async def load_profiles_with(redis: Redis, visitor_id: str | None, customer_id: str | None,
                             extra_keys: Sequence[str]
                             ) -> tuple[VisitorProfile, CustomerProfile | None, str | None, list[bytes | None]]:
    """``load_profiles`` plus the raw values of ``extra_keys``, read in the same pipeline."""
    if not visitor_id and not customer_id and not extra_keys:
        return VisitorProfile(), None, None, []
    async with redis.pipeline(transaction=False) as pipe:
        if visitor_id:
            pipe.get(keys.visitor(visitor_id))
        if customer_id:
            pipe.get(keys.customer(customer_id))
        for key in extra_keys:
            pipe.get(key)
        replies = await pipe.execute()
    raw_visitor = replies.pop(0) if visitor_id else None
    raw_customer = replies.pop(0) if customer_id else None
    visitor = VisitorProfile.from_json(orjson.loads(raw_visitor) if raw_visitor else None)
    if customer_id is None and visitor.customer_id:
        customer_id = visitor.customer_id
        raw_customer = await redis.get(keys.customer(customer_id))
    customer = None
    if customer_id and raw_customer:
        customer = CustomerProfile.from_json(orjson.loads(raw_customer))
    return visitor, customer, customer_id, replies
