"""Rebuild the profiles from the durable history (``vitrine replay --reset``).

The history is the Kafka topic (``replay``) or the embedded log (``engine.ingest.catchup`` from an
emptied checkpoint); either way the events go through the same
``EventApplier.apply`` as live processing, in the same per-visitor order, events that cannot be
applied are set aside as live (``engine.ingest.isolate``), and profiles are folded
in event time, so the result is what live processing built. Trending, exposure state and
experiment counters are rebuilt too (events older than two trending epochs no longer count, as live). The catalogue is not part of
the history: load it first, since category and brand affinities come from it. The triggers' keys
are not rebuilt either: what they recorded when the events were first applied is kept, and the
rebuild leaves them alone (``Engine(triggers=False)``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable

from redis.asyncio import Redis

from engine.ingest.apply import EventApplier
from engine.ingest.isolate import Tally, apply_isolating
from engine.events.schema import Event
from engine.store import keys



async def has_profiles(redis: Redis) -> bool:
    for pattern in keys.derived_from_events():
        async for _ in redis.scan_iter(match=pattern, count=1000):
            return True
    return False


async def delete_profiles(redis: Redis) -> int:
    """Everything derived from events (``keys.derived_from_events``) and the log's checkpoint
    (nothing is applied any more); the catalogue stays."""
    deleted = await redis.unlink(keys.log_applied())
    for pattern in keys.derived_from_events():
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += await redis.unlink(*batch)
                batch = []
        if batch:
            deleted += await redis.unlink(*batch)
    return deleted


async def replay(applier: EventApplier, batches: AsyncIterable[list[Event]]) -> Tally:
    stats = Tally()
    started = time.perf_counter()
    async for batch in batches:
        stats.count(len(batch), await apply_isolating(applier.apply, batch))
    stats.seconds = time.perf_counter() - started
    return stats
