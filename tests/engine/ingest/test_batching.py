"""``EventApplier.apply`` gives the same profiles however the events are batched, and exactly once:
the guarantee the stream workers (any batch size, redeliveries, several workers) rely on."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import redis.asyncio

from engine.events.schema import Event
from engine.runtime import Engine
from engine.profiles.codec import decode_dict
from tests.conftest import make_settings

ITEMS = [f"i{n}" for n in range(30)]


def random_events(n: int, seed: int = 7) -> list[Event]:
    """A shop's worth of event types over 25 cookies; cookies 0-5 log in, two per customer."""
    rng, now, events = random.Random(seed), time.time() - 7200, []
    for i in range(n):
        v = rng.randrange(25)
        kind = rng.choice(["product_view"] * 5 + ["add_to_cart", "remove_from_cart", "purchase", "search",
                                                  "page_view", "login"])
        fields: dict = {}
        if kind in ("product_view", "add_to_cart", "remove_from_cart"):
            fields["item_id"] = rng.choice(ITEMS)
        elif kind == "purchase":
            fields["items"] = [{"item_id": rng.choice(ITEMS), "quantity": rng.randint(1, 3), "price": 2.5}]
        elif kind == "search":
            fields["properties"] = {"query": rng.choice(["mug", "lamp"])}
        elif kind == "page_view":
            fields["properties"] = {"category": "home"}
        if kind == "login" or (v < 6 and rng.random() < 0.3):
            fields["customer_id"] = f"c{v // 2}"
        if kind == "login" and v >= 6:
            kind = "page_view"
            fields.pop("customer_id")
        events.append(Event(event_id=f"e{i}", type=kind, visitor_id=f"v{v}", ts=now + i, rt=now + i, **fields))
    return events


async def profiles(url: str) -> dict:
    client = redis.asyncio.Redis.from_url(url)
    try:
        found = {}
        for pattern in ("v:*", "c:*"):
            async for key in client.scan_iter(match=pattern):
                found[key] = await client.get(key)
        return found
    finally:
        await client.aclose()


def test_batching_and_redelivery_change_nothing(tmp_path: Path, redis_url: str) -> None:
    """One cookie per customer here: a customer's profile built from several cookies depends on
    how their events interleave (as across Kafka partitions), only its counts do not (below)."""
    events = [e for e in random_events(700) if e.customer_id is None or e.visitor_id in ("v0", "v2", "v4")]

    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url), redis_url, serve_models=False)
        one_by_one = [await engine.applier.apply([e]) for e in events]
        assert sum(s.applied for s in one_by_one) == len(events)
        expected = await profiles(redis_url)
        await engine.redis.flushdb()
        stats = await engine.applier.apply(events[:350])
        stats2 = await engine.applier.apply(events[200:])  # 150 redelivered
        assert (stats.applied + stats2.applied, stats2.duplicates) == (len(events), 150)
        assert await profiles(redis_url) == expected
        again = await engine.applier.apply(events)  # everything redelivered
        assert (again.applied, again.duplicates) == (0, len(events))
        assert await profiles(redis_url) == expected
        await engine.redis.aclose()

    asyncio.run(run())


def test_concurrent_appliers_lose_no_update(tmp_path: Path, redis_url: str) -> None:
    """Two workers holding different cookies of the same customers: compare-and-set retries."""
    now = time.time()
    events = [Event(event_id=f"o{i}", type="purchase", visitor_id=f"v{i % 6}", customer_id=f"c{i % 6 // 2}",
                    item_id=ITEMS[i % 7], price=2.0, ts=now + i, rt=now + i) for i in range(90)]

    async def run() -> None:
        settings = make_settings(tmp_path, redis_url)
        first, second = (Engine(settings, redis_url, serve_models=False) for _ in range(2))

        async def work(engine: Engine, mine: list[Event]) -> None:
            for start in range(0, len(mine), 3):
                await engine.applier.apply(mine[start:start + 3])

        odd = [e for e in events if int(e.visitor_id[1:]) % 2]
        await asyncio.gather(work(first, odd), work(second, [e for e in events if e not in odd]))
        orders = {}
        for e in events:
            orders[e.customer_id] = orders.get(e.customer_id, 0) + 1
        stored = await profiles(redis_url)
        for customer, count in orders.items():
            assert decode_dict(stored[f"c:{{{customer}}}".encode()])["o"] == count
        for engine in (first, second):
            await engine.redis.aclose()

    asyncio.run(run())
