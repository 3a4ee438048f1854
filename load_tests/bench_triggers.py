"""What triggers cost and how fast they go: event -> webhook latency, deliveries per second,
Redis bytes per scheduled occurrence, and the added cost on event apply.

    python -m load_tests.bench_triggers [--people 2000] [--poll 1.0]

Runs its own redis-server and an asyncio webhook receiver on 127.0.0.1, and an ``Engine`` with a
cart-abandoned trigger (control group 0, so every occurrence is posted):

- latency: cart events armed so that they are due as they are applied, at ~50/s for 10 s, with
  the runner polling every ``--poll`` s in the background; the wall time from ``apply`` returning
  to the receiver (another process) reading the signed document;
- catalogue latency: price drops of watched items at ~20/s for 10 s, each written as
  ``PUT /v1/items`` writes it (the change recorded with the item) and fanned out as its
  background task does; the wall time from the write to the watcher's document;
- throughput: ``--people`` occurrences due at once, decided and posted by one runner;
- memory: ``INFO used_memory`` before and after scheduling them, per occurrence;
- apply cost: µs per event applying add_to_cart batches with the trigger defined and without.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from engine.catalog import Item, upsert_changes, upsert_items
from engine.events.schema import Event
from engine.profiles import preferences
from engine.runtime import Engine
from engine.settings import Settings
from engine.store.server import free_port, start_redis
from engine.triggers.webhook import HEADER, verify

SECRET = "bench-secret-0123456789"
RULES = """triggers:
  cart:
    kind: cart_abandoned
    after: 1m
    channel: email
    control: 0
    payload: {title: "Your cart", body: "{cart_items} items"}
  drop:
    kind: price_drop
    channel: email
    control: 0
    payload: {title: "Cheaper"}
"""
_ids = itertools.count()


class Receiver:
    """A minimal HTTP/1.1 server in a process of its own (as a shop's would be): verifies each
    signature, appends ``<visitor> <wall time>`` per document to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad = 0
        self.server: asyncio.AbstractServer | None = None
        self.out = path.open("a", buffering=1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
                lower = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(lower["content-length"]))
                if verify(SECRET, lower[HEADER.lower()], body, time.time()):
                    self.out.write(f"{orjson.loads(body)['visitor_id']} {time.time()}\n")
                else:
                    self.out.write(f"bad-signature {time.time()}\n")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve(self, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port)
        await self.server.serve_forever()


def receive(path: Path, port: int) -> None:
    asyncio.run(Receiver(path).serve(port))


def arrived(path: Path) -> dict[str, float]:
    return {visitor: float(at) for visitor, at in (line.split() for line in path.read_text().splitlines())}


def cart(visitor: str, ts: float) -> list[Event]:
    return [Event(event_id=f"o{next(_ids)}", type="consent", visitor_id=visitor, ts=ts, rt=ts,
                  properties={"purpose": "email", "granted": True}),
            Event(event_id=f"a{next(_ids)}", type="add_to_cart", visitor_id=visitor, item_id="i1", ts=ts, rt=ts)]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def bench(data_dir: Path, url: str, people: int, poll_s: float) -> dict[str, Any]:
    port = free_port()
    log = data_dir / "arrivals.txt"
    log.touch()
    receiver = multiprocessing.Process(target=receive, args=(log, port), daemon=True)
    receiver.start()
    await asyncio.sleep(1.0)
    rules = data_dir / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(data_dir=data_dir, redis_url=url, rules_file=rules, trigger_poll_s=poll_s,
                        trigger_webhook_url=f"http://127.0.0.1:{port}/hook", trigger_webhook_secret=SECRET)
    engine = Engine(settings, url, serve_models=False)
    await engine.start()
    out: dict[str, Any] = {}
    sync = redis.Redis.from_url(url)

    # apply cost: with the trigger, then without (the hook sees no trigger)
    timings: dict[str, list[float]] = {"with_trigger": [], "without": []}
    for rnd in range(6):  # interleaved: the machine's load drifts
        label = ("with_trigger", "without")[rnd % 2]
        rules.write_text(RULES if label == "with_trigger" else "placements: {}\n")
        await asyncio.to_thread(engine.rules.reload, force=True)
        batches = [[e for v in range(50) for e in cart(f"ac{rnd}-{b}-{v}", time.time())] for b in range(20)]
        start = time.perf_counter()
        for batch in batches:
            await engine.applier.apply(batch)
        timings[label].append((time.perf_counter() - start) / sum(len(b) for b in batches) * 1e6)
    out["apply_us_per_event"] = {k: round(statistics.median(v), 1) for k, v in timings.items()}
    rules.write_text(RULES)
    await asyncio.to_thread(engine.rules.reload, force=True)
    sync.flushall()

    # memory and throughput: `people` occurrences due at once
    runner = engine.trigger_runner()
    before = sync.info("memory")["used_memory"]
    now = time.time()
    for start in range(0, people, 500):
        await engine.applier.apply([e for v in range(start, min(start + 500, people))
                                    for e in cart(f"t{v}", now - 60)])
    out["redis_bytes_per_scheduled"] = round((sync.info("memory")["used_memory"] - before) / people)
    began = time.perf_counter()
    decided, posted = await runner.tick()
    elapsed = time.perf_counter() - began
    received = len(arrived(log))
    out["throughput"] = {"occurrences": people, "decided": decided, "posted": posted,
                         "received": received, "seconds": round(elapsed, 2),
                         "deliveries_per_s": round(received / elapsed)}
    log.write_text("")

    # latency: ~50 events/s for 10 s, the runner polling in the background
    runner.start()
    applied: dict[str, float] = {}
    for i in range(500):
        visitor = f"l{i}"
        await engine.applier.apply(cart(visitor, time.time() - 60))
        applied[visitor] = time.time()
        await asyncio.sleep(0.02)
    deadline = time.time() + 60
    while len(got := arrived(log)) < len(applied) and time.time() < deadline:
        await asyncio.sleep(0.2)
    latencies = [(got[v] - t) * 1000 for v, t in applied.items() if v in got]
    out["latency_ms"] = {"poll_s": poll_s, "n": len(latencies), "p50": round(pct(latencies, 50), 1),
                         "p99": round(pct(latencies, 99), 1), "max": round(max(latencies), 1)}
    out["catalogue_latency_ms"] = await catalogue_latency(engine, log, poll_s)
    out["bad_signatures"] = sum(1 for line in log.read_text().splitlines() if line.startswith("bad-signature"))
    await runner.stop()
    await engine.stop()
    sync.close()
    receiver.terminate()
    receiver.join()
    return out


async def catalogue_latency(engine: Engine, log: Path, poll_s: float, n: int = 200) -> dict[str, Any]:
    """Each watcher ``w<i>`` watches item ``p<i>``; its price halves, one item at a time."""
    log.write_text("")
    await upsert_items(engine.redis, [Item(item_id=f"p{i}", price=100.0) for i in range(n)])
    await engine.applier.apply([cart(f"w{i}", time.time())[0] for i in range(n)])  # the email opt-in
    for i in range(n):
        await preferences.save(engine.redis, preferences.Owner("v", f"w{i}"), preferences.Declared(watches=[f"p{i}"]),
                               preferences.Declared(), ttl_s=86400, watchers_max=100)
    changed: dict[str, float] = {}
    fanning: set[asyncio.Task[None]] = set()
    for i in range(n):
        await upsert_changes(engine.redis, [Item(item_id=f"p{i}", price=50.0)], record=engine.catalogue_changes.record)
        changed[f"w{i}"] = time.time()
        task = asyncio.create_task(engine.catalogue_changes.run_all())  # as the route's background task
        fanning.add(task)
        task.add_done_callback(fanning.discard)
        await asyncio.sleep(0.05)
    deadline = time.time() + 60
    while len(got := arrived(log)) < len(changed) and time.time() < deadline:
        await asyncio.sleep(0.2)
    latencies = [(got[v] - t) * 1000 for v, t in changed.items() if v in got]
    return {"poll_s": poll_s, "n": len(latencies), "p50": round(pct(latencies, 50), 1),
            "p99": round(pct(latencies, 99), 1), "max": round(max(latencies), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp) / "redis", persist=False)
        try:
            result = asyncio.run(bench(Path(tmp), server.url, args.people, args.poll))
        finally:
            server.stop()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
