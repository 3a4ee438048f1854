"""`python -m load_tests.bench_capacity`: the per-unit Redis costs a capacity plan multiplies
(load_tests/capacity.md): bytes per catalogue item and per visitor, and Redis commands per
recommendation and per event.

It starts a private redis-server, trains the demo shop's model as `vitrine train` does, loads the
catalogue and applies real-basket visitors through a model-serving Engine (as a server applies
them), reading Redis's own ``used_memory`` before and after each step; then it resets Redis's
command statistics, serves one ``home`` recommendation per visitor in process, and reads them
again; likewise for events applied one request at a time and in worker-sized batches.
Commands run inside the apply scripts count (``INFO commandstats`` includes them), as does each
client command (one MGET, one EVALSHA).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from engine.events.history import interactions
from engine.events.schema import Event
from engine.ingest.importer import ImportReport, read_events
from engine.ranking.request import RecoRequest
from engine.runtime import Engine
from engine.settings import Settings
from engine.store.server import start_redis
from engine.training import train_config
from load_tests.bench import load_items
from load_tests.sessions import sessions_from_baskets
from models.datasets import write_online_retail
from models.train import train_from_rows

BATCH = 1000  # events per apply call in the batched case (VITRINE_KAFKA_BATCH_MAX's default)


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def commands(redis: Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (the INFO/CONFIG calls themselves left out)."""
    stats = await redis.info("commandstats")
    out = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {k: v for k, v in out.items() if k not in ("info", "config", "config|resetstat")}


def events_of(sessions: list[list[tuple[str, str]]], prefix: str, now: float) -> tuple[list[str], list[Event]]:
    visitor_ids, events = [], []
    for n, session in enumerate(sessions):
        vid = f"{prefix}-{n:06d}"
        visitor_ids.append(vid)
        for k, (etype, item) in enumerate(session):
            events.append(Event(event_id=f"{prefix}{n}-{k}", type=etype, visitor_id=vid, item_id=item,  # type: ignore[arg-type]
                                ts=now + k * 20, rt=now + k * 20))
    return visitor_ids, events


def per(counts: dict[str, int], units: int) -> dict[str, float]:
    return {"total": round(sum(counts.values()) / units, 2),
            **{k: round(v / units, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}}


async def _measure(settings: Settings, url: str, items_csv: Path, sessions: list[list[tuple[str, str]]]) -> dict[str, Any]:
    redis = Redis.from_url(url)
    report: dict[str, Any] = {"redis_version": (await redis.info("server"))["redis_version"]}
    empty = await used_memory(redis)
    item_ids = await load_items(url, items_csv)
    catalogue = await used_memory(redis)
    report["items"] = len(item_ids)
    report["bytes_per_item"] = round((catalogue - empty) / len(item_ids))

    engine = Engine(settings, url)
    await engine.refresh(first=True)
    now = time.time() - 600
    visitor_ids, events = events_of(sessions, "cap", now)
    await redis.config_resetstat()
    for start in range(0, len(events), BATCH):
        await engine.applier.apply(events[start:start + BATCH])
    batched = await commands(redis)
    await engine.precomputer.flush()  # the stored for-you lists, written in the background
    report["visitors"] = len(visitor_ids)
    report["events"] = len(events)
    report["bytes_per_visitor"] = round((await used_memory(redis) - catalogue) / len(visitor_ids))
    report["commands_per_event_batched"] = per(batched, len(events))

    single_ids, singles = events_of(sessions[: max(len(sessions) // 4, 1)], "one", now)
    await redis.config_resetstat()
    for event in singles:
        await engine.applier.apply([event])
    report["commands_per_event_alone"] = per(await commands(redis), len(singles))

    await engine.precomputer.flush()
    await redis.config_resetstat()
    for vid in visitor_ids:
        await engine.recommender.recommend(RecoRequest("home", vid, None, n=10))
    report["commands_per_recommendation"] = per(await commands(redis), len(visitor_ids))
    await engine.stop()
    await redis.aclose()
    return report


def run(visitors: int, models_dir: Path | None = None, seed: int = 7) -> dict[str, Any]:
    """``models_dir``: a trained demo model to use instead of training one."""
    with tempfile.TemporaryDirectory(prefix="vitrine-capacity-") as tmp_name:
        tmp = Path(tmp_name)
        server = start_redis(tmp / "redis", persist=False)
        try:
            settings = Settings(data_dir=tmp / "data", redis_url=server.local_url, admin_key="capacity-admin-key-x")
            items_csv, events_csv = write_online_retail(tmp / "demo")
            if models_dir is not None:
                shutil.copytree(models_dir, settings.models_dir)
            else:
                rows = interactions(e.model_dump() for e in read_events(events_csv, ImportReport(),
                                                                        accepted_at=time.time()))
                train_from_rows(rows, train_config(settings), settings.models_dir)
            sessions = sessions_from_baskets(events_csv, visitors, seed)
            return asyncio.run(_measure(settings, server.local_url, items_csv, sessions))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.bench_capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=2000)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.visitors), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
