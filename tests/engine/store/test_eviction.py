"""A full managed Redis forgets its idlest visitors and nothing else: the catalogue and the
experiment counters carry no TTL, and the policy (volatile-lru) evicts only keys that have one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio

from engine.store import keys
from engine.catalog import Item, upsert_items
from engine.events.schema import Event
from engine.store import keys
from engine.store.server import start_redis
from engine.runtime import Engine
from engine.settings import Settings
from tests.conftest import make_settings

RULES = ("experiments:\n  home-test:\n    placement: home\n    variants:\n"
         "      - {name: a, weight: 1}\n      - {name: b, weight: 1}\n")


def event(event_id: str, visitor_id: str, type_: str = "product_view", **fields: object) -> Event:
    now = time.time()
    return Event.model_validate({"event_id": event_id, "type": type_, "visitor_id": visitor_id, "ts": now,
                                 "rt": now, **fields})


def test_memory_pressure_evicts_idle_visitors_never_the_catalogue_or_counters(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    default = Settings()
    server = start_redis(tmp_path / "redis", persist=False, maxmemory_policy=default.redis_maxmemory_policy)

    async def run() -> None:
        engine = Engine(make_settings(tmp_path, server.url, rules_file=rules), server.url, serve_models=False)
        admin = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        try:
            items = [Item(item_id=f"i{n}", title=f"Item {n}", category="home.kitchen", price=n) for n in range(2000)]
            await upsert_items(engine.redis, items)
            await engine.start()
            shown = [event(f"x-{n}", f"seen-{n}", "block_impression",
                           properties={"block_id": "reco:home", "recommendation_id": f"r{n}.home-test.a"})
                     for n in range(20)]
            await engine.applier.apply(shown)
            xp = keys.experiment("home-test")
            counters = await admin.zrange(xp, 0, -1, withscores=True)
            catalogue = await admin.hgetall(keys.catalogue_keys(False).items)
            assert dict(counters) == {"a:impressions": 20.0, "a:visitors": 20.0} and await admin.ttl(xp) == -1

            used = int((await admin.info("memory"))["used_memory"])
            await admin.config_set("maxmemory", used + 1_000_000)
            for start in range(0, 8000, 500):  # some 3 MB of new visitors: a third of them must go
                await engine.applier.apply([event(f"v-{n}", f"v{n}", item_id=f"i{n % 2000}")
                                            for n in range(start, start + 500)])
            assert int((await admin.info("stats"))["evicted_keys"]) > 0
            assert await admin.hgetall(keys.catalogue_keys(False).items) == catalogue
            assert await admin.zrange(xp, 0, -1, withscores=True) == counters
            visitors = [key async for key in admin.scan_iter(match="v:*", count=1000)]
            assert 0 < len(visitors) < 8000
        finally:
            await admin.config_set("maxmemory", 0)
            await admin.aclose()
            await engine.stop()

    try:
        asyncio.run(run())
    finally:
        server.stop()
