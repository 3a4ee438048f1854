"""Redis memory per visitor: every key a new visitor's events create, what it costs and how long it
is kept.

    python -m load_tests.bench_memory [--visitors 3000] [--out reports]

Starts a redis-server on 127.0.0.1 in a temporary directory, loads the demo catalogue and a model
trained on part of the demo shop (with a model, applying events also stores each visitor's for-you
list, as in production), then applies events as a server applies them (``Engine.applier``) for two
kinds of new visitors: a bounce (one page view of a category page) and a typical one (a real
basket's items viewed one by one, up to 12, the last one added to the cart). Per kind and key
family it reports MEMORY USAGE, the real cost (``used_memory`` freed by deleting the family: MEMORY
USAGE leaves out the expiry entry) and the TTL, and the byte-days a visitor holds: what each new
visitor per day keeps in Redis at steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from api.visitor_cookie import new_visitor_id
from api.quality_cli import train_config
from engine.catalog import upsert_items
from engine.events.schema import Event
from engine.events.history import interactions
from engine.ingest.importer import ImportReport, read_events, read_items
from engine.store.server import start_redis
from engine.runtime import Engine
from engine.settings import Settings
from load_tests.bench import _sessions_from_baskets
from models.datasets import write_online_retail
from models.train import train_from_rows

EVENT_LINES = 30_000  # of the demo's purchase lines, for the model
FAMILIES = {"v": "visitor profile", "d": "event-id dedup bucket", "f": "stored for-you list", "x": "exposure"}
DAY = 86400.0
BATCH = 500


def _events(kind: str, visitors: list[str], sessions: list[list[tuple[str, str]]]) -> list[Event]:
    now = time.time() - 600
    if kind == "bounce":
        return [Event(event_id=f"{v}-0", type="page_view", visitor_id=v, properties={"category": "home.kitchen"},
                      ts=now, rt=now) for v in visitors]
    return [Event(event_id=f"{v}-{k}", type=etype, visitor_id=v, item_id=item, ts=now + 20 * k,  # type: ignore[arg-type]
                  rt=now + 20 * k)
            for v, session in zip(visitors, sessions) for k, (etype, item) in enumerate(session)]


async def _measure(engine: Engine, r: Redis, kind: str, count: int,
                   sessions: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """Apply the visitors' events; per key family: keys, MEMORY USAGE, used_memory freed (the keys are
    deleted, so the next kind starts from the same Redis), TTL."""
    before = (await r.info("memory"))["used_memory"]
    visitors = [new_visitor_id() for _ in range(count)]
    events = _events(kind, visitors, sessions)
    for start in range(0, len(events), BATCH):
        await engine.applier.apply(events[start:start + BATCH])
    await engine.precomputer.flush()
    total = (await r.info("memory"))["used_memory"] - before
    families: dict[str, Any] = {}
    for prefix, name in FAMILIES.items():
        found = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
        if not found:
            continue
        sample = found[:500]
        usage = sum([await r.memory_usage(k, samples=0) or 0 for k in sample]) / len(sample)
        ttl = sum([await r.ttl(k) for k in sample]) / len(sample)
        held = (await r.info("memory"))["used_memory"]
        for start in range(0, len(found), 1000):
            await r.unlink(*found[start:start + 1000])
        freed = (held - (await r.info("memory"))["used_memory"]) / count
        families[prefix] = {"what": name, "keys_per_visitor": round(len(found) / count, 2),
                            "memory_usage": round(usage, 1), "used_memory_freed": round(freed, 1),
                            "ttl_days": round(ttl / DAY, 2), "byte_days": round(freed * ttl / DAY, 1)}
    return {"visitors": count, "events": len(events), "used_memory_per_visitor": round(total / count, 1),
            "families": families,
            "byte_days_per_visitor": round(sum(f["byte_days"] for f in families.values()), 1)}


async def _run(settings: Settings, url: str, items_csv: Path, visitors: int,
               sessions: list[list[tuple[str, str]]], report: dict[str, Any]) -> None:
    engine = Engine(settings, url)
    r = Redis.from_url(url)
    try:
        await upsert_items(r, read_items(items_csv, ImportReport()))
        await engine.refresh(first=True)
        report["redis_version"] = (await r.info("server"))["redis_version"]
        for kind in ("bounce", "typical"):
            print(f"{visitors} {kind} visitors...", flush=True)
            report[kind] = await _measure(engine, r, kind, visitors, sessions)
    finally:
        await engine.stop()
        await r.aclose()


def run(visitors: int) -> dict[str, Any]:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    report: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        server = start_redis(tmp / "redis", persist=False)
        try:
            settings = Settings(data_dir=tmp / "data", redis_url=server.url, admin_key="bench-admin-key-0000")
            report["settings"] = {name: getattr(settings, name) for name in type(settings).model_fields
                                  if name.endswith("ttl_s") or name == "dedup_window_s"}
            print("preparing: demo shop, model...", flush=True)
            items_csv, events_csv = write_online_retail(tmp / "demo")
            subset = tmp / "events_subset.csv"
            with events_csv.open() as src, subset.open("w") as dst:
                for number, line in enumerate(src):
                    if number > EVENT_LINES:
                        break
                    dst.write(line)
            rows = interactions(e.model_dump() for e in read_events(subset, ImportReport(), accepted_at=time.time()))
            train_from_rows(rows, train_config(settings), settings.models_dir)
            sessions = _sessions_from_baskets(events_csv, visitors, 7)
            asyncio.run(_run(settings, server.url, items_csv, visitors, sessions, report))
        finally:
            server.stop()
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Redis memory per new visitor ({report['started_at']})", "",
             f"Redis {report['redis_version']}; settings: "
             f"{', '.join(f'{k}={v}' for k, v in report['settings'].items())}.", "",
             "| visitor | key | keys per visitor | MEMORY USAGE B | used_memory B | TTL days | byte-days |",
             "|---|---|---|---|---|---|---|"]
    for kind in ("bounce", "typical"):
        for prefix, f in report[kind]["families"].items():
            lines.append(f"| {kind} | `{prefix}:` {f['what']} | {f['keys_per_visitor']} | {f['memory_usage']} | "
                         f"{f['used_memory_freed']} | {f['ttl_days']} | {f['byte_days']} |")
    lines.append("")
    for kind in ("bounce", "typical"):
        k = report[kind]
        lines.append(f"{kind}: {k['used_memory_per_visitor']} B of used_memory per new visitor "
                     f"({k['events']} events for {k['visitors']} visitors); {k['byte_days_per_visitor']} byte-days, "
                     "i.e. what each daily new visitor of this kind keeps in Redis at steady state.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=3000, help="new visitors of each kind (default 3000)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where to write the reports")
    args = parser.parse_args(argv)
    report = run(args.visitors)
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace(":", "").replace("-", "")
    (args.out / f"bench-memory-{stamp}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"bench-memory-{stamp}.md").write_text(text)
    print(f"reports: {args.out}/bench-memory-{stamp}.json .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
