"""A durable queue of due work in Redis: a zset of due times and a hash of the work's data.

``claim`` takes what is due atomically (one Lua script): each claimed member's score moves to a
lease deadline, so it is taken once, by one process; if that process dies before ``done``, the
lease runs out and the member is claimed again (with the same data, so the same idempotency key).
Scheduling again the same member moves its due time: the queue holds one entry per member.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from engine.store import cluster
from engine.triggers import keys

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""

# Remove only if the data is still what was claimed: scheduled again meanwhile, it stays.
_DONE = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class Queue:
    def __init__(self, redis: Redis, name: str) -> None:
        self.redis = redis
        self.due_key, self.data_key = name, keys.data(name)
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)

    def put(self, pipe: Pipeline, member: str, due: float, data: dict[str, Any]) -> None:
        pipe.hset(self.data_key, member, orjson.dumps(data))
        pipe.zadd(self.due_key, {member: due})

    def cancel(self, pipe: Pipeline, member: str) -> None:
        pipe.zrem(self.due_key, member)
        pipe.hdel(self.data_key, member)

    async def claim(self, now: float, lease_s: float, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` due members with their raw data (members without data are dropped)."""
        reply = await self._claim(keys=[self.due_key, self.data_key], args=[now, now + lease_s, limit])
        pairs = [(reply[i].decode(), reply[i + 1]) for i in range(0, len(reply), 2)]
        orphans = [m for m, raw in pairs if not raw]
        if orphans:
            await self.redis.zrem(self.due_key, *orphans)
        return [(m, raw) for m, raw in pairs if raw]

    async def done(self, pipe: Pipeline, member: str, raw: bytes) -> None:
        """Queued on ``pipe``: remove the member if its data is still ``raw``."""
        await cluster.call(self._done, [self.due_key, self.data_key], [member, raw], pipe)

    def again(self, pipe: Pipeline, member: str, due: float, data: dict[str, Any]) -> None:
        """Put back for later (quiet hours, a retry) with updated data."""
        self.put(pipe, member, due, data)

    async def size(self) -> int:
        return int(await self.redis.zcard(self.due_key))
