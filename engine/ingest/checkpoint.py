"""How far the embedded event log has been applied to the profiles, kept in Redis next to them.

One hash, ``log:applied``: for each segment file name, a byte offset below which every line has
been applied (or skipped as unapplicable), and the field ``created`` once a catch-up has given
every segment then on disk a field: from then on, a segment without one is newer than the
checkpoint and is read from its start. The key has no TTL, so a ``volatile-*`` eviction policy never
picks it (an ``allkeys-*`` one could; losing it costs a catch-up limited to the dedup window, see
``engine.ingest.catchup``). It is updated with the applies (``engine.ingest.writer``) and by the
catch-up of each start (``engine.ingest.catchup``); an offset lagging behind only means lines applied a
second time, which the dedup memory turns into no-ops.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from engine.store import keys

CREATED = "created"


@dataclass
class Positions:
    offsets: dict[str, int]
    complete: bool  # every segment older than the checkpoint has a field


class Checkpoint:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.key = keys.log_applied()  # the shop of the process or request that makes it

    async def load(self) -> Positions:
        raw = await self._redis.hgetall(self.key)
        fields = {k.decode(): int(v) for k, v in raw.items()}
        complete = fields.pop(CREATED, None) is not None
        return Positions(fields, complete)

    async def save(self, offsets: dict[str, int], *, complete: bool = False) -> None:
        """Move the offsets; ``complete`` marks the checkpoint complete (kept from the first time)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if offsets:
                pipe.hset(self.key, mapping=offsets)  # type: ignore[arg-type]
            if complete:
                pipe.hsetnx(self.key, CREATED, int(time.time()))
            await pipe.execute()

    async def forget(self, segments: Iterable[str]) -> None:
        names = list(segments)
        if names:
            await self._redis.hdel(self.key, *names)

    async def delete(self) -> None:
        await self._redis.unlink(self.key)
