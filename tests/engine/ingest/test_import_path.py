"""engine.ingest.importer.import_events_to_log: an import takes the API's log-then-apply path, so
it isolates events that cannot be applied and moves the checkpoint like accepted events. Real
Redis, real log files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis

from engine.events.log import EventLog, segments
from engine.ingest.checkpoint import Checkpoint
from engine.store.keys import log_applied
from engine.ingest.importer import import_events_to_log
from engine.profiles import VisitorProfile
from engine.runtime import Engine
from engine.store import keys
from tests.conftest import make_settings


def test_an_import_skips_what_cannot_be_applied_applies_the_rest_and_moves_the_checkpoint(
        tmp_path: Path, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set(keys.visitor("v-corrupt"), b"\x07")  # a MessagePack integer, not a profile
    csv = tmp_path / "events.csv"
    csv.write_text("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
                   + "".join(f"2024-01-01T10:0{i}:00Z,{v},,add_to_cart,A,1,\n"
                             for i, v in enumerate(["v1", "v-corrupt", "v2", "v1", "v-corrupt", "v2", "v1"])))

    async def run() -> tuple[int, int]:
        engine = Engine(make_settings(tmp_path, redis_url), redis_url, serve_models=False)
        event_log = EventLog(tmp_path / "log")
        try:
            report, applied = await import_events_to_log(csv, event_log, engine.applier, Checkpoint(engine.redis),
                                                         accepted_at=time.time())
        finally:
            event_log.close()
            await engine.redis.aclose()
        return report.loaded, applied

    assert asyncio.run(run()) == (7, 5)
    [segment] = segments(tmp_path / "log")
    with redis.Redis.from_url(redis_url) as client:
        carts = {v: VisitorProfile.decode(client.get(keys.visitor(v))).cart for v in ("v1", "v2")}
        assert carts == {"v1": {"A": 3}, "v2": {"A": 2}}
        assert client.get(keys.visitor("v-corrupt")) == b"\x07"  # left as it was, nobody blocked
        assert int(client.hget(log_applied(), segment.name)) == segment.stat().st_size  # skipped counts as done
