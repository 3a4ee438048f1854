"""Catalogue-driven triggers survive a crash between the catalogue write and the fan-out: the
change is recorded in the write's transaction, and any runner fans it out, exactly once (real
Redis, real webhook receiver, a clock the test moves)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis

from engine.catalog import Item, upsert_changes, upsert_items
from engine.profiles import preferences
from engine.runtime import Engine
from engine.triggers import catalogue, keys
from tests.conftest import make_settings
from tests.engine.triggers.receiver import Receiver
from tests.engine.triggers.test_delivery import SECRET, Clock, opt_in, stats

RULES = """
triggers:
  drop:
    kind: price_drop
    min_drop: 10%
    channel: email
    control: 0
    payload: {title: "Cheaper now"}
"""
KETTLE = Item(item_id="SKU-K", title="Kettle", price=20.0)
CHEAPER = Item(item_id="SKU-K", price=15.0)


def engines(tmp_path: Path, redis_url: str, receiver: Receiver, rules: str = RULES) -> Any:
    (tmp_path / "rules.yaml").write_text(rules)
    settings = make_settings(tmp_path, redis_url, rules_file=tmp_path / "rules.yaml", trigger_webhook_url=receiver.url,
                             trigger_webhook_secret=SECRET)

    async def start() -> Engine:
        engine = Engine(settings, redis_url, serve_models=False)
        await engine.start()
        return engine

    return start


async def watched(engine: Engine, *visitors: str) -> None:
    """The kettle in the catalogue, the visitors opted into email and watching it."""
    await upsert_items(engine.redis, [KETTLE])
    await engine.applier.apply([opt_in(v, time.time()) for v in visitors])
    for v in visitors:
        await preferences.save(engine.redis, preferences.Owner("v", v), preferences.Declared(watches=["SKU-K"]),
                               preferences.Declared(), ttl_s=86400, watchers_max=100)


def test_a_crash_after_the_write_still_delivers_once(tmp_path: Path, redis_url: str) -> None:
    clock = Clock(time.time())

    async def main(receiver: Receiver) -> None:
        start = engines(tmp_path, redis_url, receiver)
        dying = await start()
        await watched(dying, "v1", "v2")
        # The write commits with its change recorded; the process dies before any fan-out.
        _, changes = await upsert_changes(dying.redis, [CHEAPER], record=dying.catalogue_changes.record)
        assert len(changes) == 1 and await dying.catalogue_changes.queue.size() == 1
        await dying.stop()
        clock.now = time.time()

        survivor = await start()
        runner = survivor.trigger_runner(clock=clock)
        try:
            assert await runner.tick() == (2, 2)
            assert await runner.tick() == (0, 0)
            assert await survivor.catalogue_changes.queue.size() == 0
        finally:
            await runner.stop()
            await survivor.stop()

    with Receiver(SECRET) as receiver:
        asyncio.run(main(receiver))
    assert sorted((d["visitor_id"], d["context"]["price"]) for d in receiver.received) == [("v1", 15.0), ("v2", 15.0)]
    assert len(set(receiver.keys)) == 2
    assert stats(redis_url, "drop") == {"sent:deliveries": 2, "webhook:delivered": 2}


def test_a_fan_out_taken_over_after_its_lease_arms_once(tmp_path: Path, redis_url: str) -> None:
    """Two processes that both claimed a change (the first one's lease ran out): the later commit
    arms nothing, even after the first occurrence was delivered and left the queue."""
    clock = Clock(time.time())

    async def main(receiver: Receiver) -> None:
        engine = await engines(tmp_path, redis_url, receiver)()
        runner = engine.trigger_runner(clock=clock)
        changes = engine.catalogue_changes
        try:
            await watched(engine, "v1")
            await upsert_changes(engine.redis, [CHEAPER], record=changes.record)
            clock.now = time.time()
            slow = await changes.queue.claim(clock.now, 0.0, 10)  # claimed, lease over at once
            fast = await changes.queue.claim(clock.now, catalogue.LEASE_S, 10)
            assert [m for m, _ in slow] == [m for m, _ in fast] and len(fast) == 1
            assert await changes.fan_out(*fast[0]) == 1
            assert await runner.tick() == (1, 1)
            assert await changes.fan_out(*slow[0]) == 0
            clock.now += 3600
            assert await runner.tick() == (0, 0)
        finally:
            await runner.stop()
            await engine.stop()

    with Receiver(SECRET) as receiver:
        asyncio.run(main(receiver))
    assert [d["visitor_id"] for d in receiver.received] == ["v1"]


def test_nothing_is_recorded_without_a_catalogue_driven_trigger(tmp_path: Path, redis_url: str) -> None:
    async def main(receiver: Receiver) -> None:
        engine = await engines(tmp_path, redis_url, receiver, rules="placements: {}\n")()
        try:
            await watched(engine, "v1")
            _, changes = await upsert_changes(engine.redis, [CHEAPER], record=engine.catalogue_changes.record)
            assert len(changes) == 1 and await engine.catalogue_changes.queue.size() == 0
        finally:
            await engine.stop()

    with Receiver(SECRET) as receiver:
        asyncio.run(main(receiver))
    assert receiver.requests == 0
    client = redis.Redis.from_url(redis_url)
    assert client.exists(keys.CHANGES, keys.data(keys.CHANGES)) == 0
    client.close()
