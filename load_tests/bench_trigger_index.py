"""What the triggers' indexes cost: µs per product view applied with no trigger, with a price drop
that does not count views, and with one that does (``min_views``, ``carted``: the behaviour
watchers, engine.profiles.viewers); Redis bytes per behaviour-watcher entry and per
declared-interest entry (engine.profiles.interests).

    python -m load_tests.bench_trigger_index [--people 2000]

Runs its own redis-server; rounds are interleaved (the machine's load drifts), medians reported.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from engine.events.schema import Event
from engine.profiles import preferences
from engine.runtime import Engine
from engine.settings import Settings
from engine.store.server import start_redis

_ids = itertools.count()
DROP = "triggers:\n  drop:\n    kind: price_drop\n    channel: email\n"
RULES = {"none": "placements: {}\n", "price_drop": DROP, "price_drop_min_views": DROP + "    min_views: 3\n"}


def views(visitor: str, ts: float, items: int) -> list[Event]:
    return [Event(event_id=f"p{next(_ids)}", type="product_view", visitor_id=visitor, item_id=f"i{i}", ts=ts, rt=ts)
            for i in range(items)]


def usage(sync: redis.Redis, patterns: tuple[str, ...], entries: int) -> float:
    """``MEMORY USAGE`` of every key matching ``patterns`` (exact, all elements sampled), per entry."""
    total = sum(int(sync.memory_usage(k, samples=0) or 0) for p in patterns for k in sync.scan_iter(p))
    return round(total / entries, 1)


async def bench(data_dir: Path, url: str, people: int) -> dict[str, Any]:
    rules = data_dir / "rules.yaml"
    rules.write_text(RULES["none"])
    engine = Engine(Settings(data_dir=data_dir, redis_url=url, rules_file=rules), url, serve_models=False)
    await engine.start()
    sync = redis.Redis.from_url(url)
    out: dict[str, Any] = {}

    timings: dict[str, list[float]] = {k: [] for k in RULES}
    for rnd in range(15):
        label = list(RULES)[rnd % 3]
        rules.write_text(RULES[label])
        await asyncio.to_thread(engine.rules.reload, force=True)
        batches = [[e for v in range(50) for e in views(f"a{rnd}-{b}-{v}", time.time(), 4)] for b in range(20)]
        start = time.perf_counter()
        for batch in batches:
            await engine.applier.apply(batch)
        timings[label].append((time.perf_counter() - start) / sum(len(b) for b in batches) * 1e6)
    out["apply_us_per_product_view"] = {k: round(statistics.median(v), 1) for k, v in timings.items()}
    sync.flushall()

    # behaviour watchers: `people` people view one item each of 100 (both keys: wb:, wp:)
    rules.write_text(RULES["price_drop_min_views"])
    await asyncio.to_thread(engine.rules.reload, force=True)
    for start in range(0, people, 500):
        await engine.applier.apply([Event(event_id=f"v{v}", type="product_view", visitor_id=f"w{v}",
                                          item_id=f"i{v % 100}", ts=time.time(), rt=time.time())
                                    for v in range(start, min(start + 500, people))])
    out["redis_bytes_per_behaviour_watcher"] = usage(sync, ("wb:*", "wp:*"), people)
    sync.flushall()

    # declared interests: `people` records of one favourite category (of 100) and one brand (of 20)
    for v in range(people):
        await preferences.save(engine.redis, preferences.Owner("v", f"d{v}"),
                               preferences.Declared(categories=[f"cat{v % 100}"], brands=[f"brand{v % 20}"]),
                               preferences.Declared(), ttl_s=86400, watchers_max=10_000)
    out["redis_bytes_per_interest_entry"] = usage(sync, ("ic:*", "ib:*"), 2 * people)
    await engine.stop()
    sync.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp) / "redis", persist=False)
        try:
            result = asyncio.run(bench(Path(tmp), server.url, args.people))
        finally:
            server.stop()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
