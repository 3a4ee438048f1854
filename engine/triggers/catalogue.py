"""A catalogue write's side of the triggers, made crash-safe: each changed item is recorded in an
outbox (``tg:{tg}:i``, a ``Queue``) in the write's own transaction, and fanned out to the item's
watchers (``engine.profiles.preferences.watchers`` plus the behaviour watchers of
``engine.profiles.viewers``) and, for a new item, to the people whose declared favourites match it
(``engine.profiles.preferences.interested``), never a scan of profiles, off the request path: right after the answer, and by every trigger runner's tick, so a process that dies between
the write and the fan-out loses nothing.

A change is claimed with a lease (``Queue.claim``); its occurrences are armed by one script that
also removes it from the outbox, and only if it is still there: two processes that both claimed it
(a lease ran out) arm it once. The occurrences' ``armed`` is the change's time, so their
idempotency keys are the same whichever process fans the change out.

On a Redis Cluster the outbox is written in the catalogue's transaction, so it shares the
catalogue's slot (``{items}:tg:i``) and the occurrences sit in ``{tg}``: the commit is two steps.
First, in ``{tg}``, the occurrences are armed unless the change's id is already among the changes
fanned out (``tg:{tg}:i:c``, kept ``COMMITTED_KEPT_S``), and the id is added there in the same
script; then the change leaves the outbox. A crash in between leaves the change to be claimed
again after its lease: its first step finds the id and arms nothing, the second removes it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from engine.catalog import Change, Item
from engine.profiles import preferences
from engine.profiles.viewers import viewers
from engine.store import cluster
from engine.triggers import keys
from engine.triggers.hook import Op, TriggerHook
from engine.triggers.kinds import KINDS
from engine.triggers.queue import Queue

log = logging.getLogger(__name__)
LEASE_S = 120.0
BATCH = 200
COMMITTED_KEPT_S = 7 * 86400  # far longer than a change can wait, leased, for its removal

# Arm the occurrences (member, due, data triples) and drop the change, only if it is still the one
# claimed: a change another process committed already arms nothing again.
_COMMIT = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for i = 3, #ARGV, 3 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
end
return 1
"""

# On a cluster, the first step: KEYS the changes fanned out, the occurrences' zset and hash; ARGV the
# change's id, now, kept seconds, then the occurrences' triples. 1 when armed now.
_ARM_ONCE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
for i = 4, #ARGV, 3 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
end
return 1
"""


class CatalogueChanges:
    def __init__(self, redis: Redis, hook: TriggerHook, triggers: Callable[[], dict[str, Any]], *,
                 clock: Callable[[], float] = time.time) -> None:
        """``triggers``: the live rules' trigger definitions (a change is recorded only while one of
        a catalogue-driven kind is enabled)."""
        self._redis = redis
        self._hook = hook
        self._triggers = triggers
        self._clock = clock
        self._names = keys.names(cluster.on_cluster(redis))
        self.queue = Queue(redis, self._names.changes)
        self._commit = redis.register_script(_COMMIT)
        self._arm_once = redis.register_script(_ARM_ONCE)

    def wanted(self) -> bool:
        return any(t.enabled and hasattr(KINDS[t.kind], "on_item_changed") for t in self._triggers().values())

    def record(self, pipe: Pipeline, changes: list[Change]) -> None:
        """Queued on the catalogue write's transaction (``engine.catalog.upsert_changes``)."""
        if not self.wanted():
            return
        at = self._clock()
        for old, new in changes:
            self.queue.put(pipe, uuid.uuid4().hex, at, {
                "at": at, "old": old.model_dump(exclude_none=True) if old is not None else None,
                "new": new.model_dump(exclude_none=True)})

    async def run(self, now: float, lease_s: float = LEASE_S, limit: int = BATCH) -> int:
        """Fan out up to ``limit`` recorded changes: the number taken."""
        claimed = await self.queue.claim(now, lease_s, limit)
        for member, raw in claimed:
            await self.fan_out(member, raw)
        return len(claimed)

    async def fan_out(self, member: str, raw: bytes) -> int:
        """One claimed change to its watchers (and, for a new item, the people interested in it):
        the occurrences armed (0 if another process committed it meanwhile)."""
        data = orjson.loads(raw)
        old = Item.model_validate(data["old"]) if data["old"] is not None else None
        new = Item.model_validate(data["new"])
        ops: list[Op] = []

        async def collect(batch: list[Op]) -> None:
            for op in batch:
                if op.kind != "arm":
                    raise ValueError(f"a catalogue change can only arm occurrences, not {op.kind!r}")
            ops.extend(batch)

        await self._hook.on_item_changed(old, new, self._watchers, at=data["at"], write=collect)
        if old is None:
            await self._hook.on_item_changed(old, new, self._interested(new), index="interests", at=data["at"],
                                             write=collect)
        triples: list[Any] = []
        for op in ops:
            triples += [op.member, op.due, orjson.dumps(op.data)]
        if self._names.cluster:
            armed = await self._arm_once(keys=[self._names.committed, keys.OCCURRENCES, keys.data(keys.OCCURRENCES)],
                                         args=[member, self._clock(), COMMITTED_KEPT_S, *triples])
            async with self._redis.pipeline(transaction=True) as pipe:
                await self.queue.done(pipe, member, raw)
                await pipe.execute()
            return len(ops) if armed else 0
        args: list[Any] = [member, raw, *triples]
        ok = await self._commit(keys=[self.queue.due_key, self.queue.data_key, keys.OCCURRENCES,
                                      keys.data(keys.OCCURRENCES)], args=args)
        return len(ops) if ok else 0

    async def drain(self, now: float) -> None:
        """Every change recorded and not claimed by another process."""
        while await self.run(now) == BATCH:
            pass

    async def run_all(self) -> None:
        """``drain`` after ``PUT /v1/items`` answers. A Redis failure is logged: the changes stay
        recorded for the runners."""
        try:
            await self.drain(self._clock())
        except RedisError as exc:
            log.warning("catalogue triggers postponed to the runner (%s: %s)", type(exc).__name__, exc)

    async def _watchers(self, item_id: str) -> list[preferences.Watcher]:
        return preferences.with_viewers(await preferences.watchers(self._redis, item_id),
                                        await viewers(self._redis, item_id))

    def _interested(self, item: Item) -> Callable[[str], Awaitable[list[preferences.Watcher]]]:
        async def people(item_id: str) -> list[preferences.Watcher]:
            return [preferences.Watcher(m, None, True)
                    for m in await preferences.interested(self._redis, item.category, item.brand)]
        return people
