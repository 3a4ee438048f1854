"""The behaviour watchers of an item: people who viewed it repeatedly or put it in their cart,
for a price drop to reach them as it reaches those who asked (``engine.profiles.preferences``).

Two keys, written by one small script on the apply path (``NOTE``), and only while a price-drop
trigger asks for them (``min_views`` or ``carted``): per person a hash of counts (``wp:{person}``:
item -> views, ``+item`` -> cart adds), and per item a sorted set of the people by their last signal
(``wb:{item}``). Both are bounded: an entry older than the TTL goes, an item keeps its most recent
``cap`` people, a person at most ``PER_PERSON`` items. An erasure reads the person's hash to remove
their entries (``unindex``); ``viewers`` checks each entry against the hash and drops stale ones.

On a Redis Cluster the two keys sit in different slots: ``note`` counts in the person's hash first
(``NOTE_PERSON``), then adds the item's entry (``NOTE_ITEM``). A crash in between leaves a count
without its entry (the person is reached from their next view on), never an entry without counts
(which ``viewers`` would drop anyway); adding the entry again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from engine.store import cluster, keys

PER_PERSON = 200  # items whose views and cart adds one person's hash counts
READ = 500

# KEYS: the item's viewers, the person's counts. ARGV: person, field (item, or +item for a cart add),
# now, ttl seconds, cap per item, cap per person.
NOTE = """
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and redis.call('HLEN', KEYS[2]) > tonumber(ARGV[6]) then
  redis.call('HDEL', KEYS[2], ARGV[2])  -- a new item past the person's cap: not counted
  return 0
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
if redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) == 1 then  -- a new entry: trim the old and the excess
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[5]) - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# The same in two single-slot steps. NOTE_PERSON: KEYS the person's counts; ARGV field, ttl, cap per
# person; 1 when counted.
NOTE_PERSON = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) == 1 and redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
# NOTE_ITEM: KEYS the item's viewers; ARGV person, now, ttl, cap per item.
NOTE_ITEM = """
if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Viewer:
    person: str  # ``v:ID`` or ``c:ID``
    views: int
    carts: int


def note_args(person: str, item_id: str, carted: bool, now: float, ttl_s: int, cap: int) -> tuple[list[str], list[object]]:
    """The keys and arguments of ``NOTE`` for one product view (or cart add, ``carted``)."""
    field = f"+{item_id}" if carted else item_id
    return [keys.item_viewers(item_id), keys.viewed_items(person)], [person, field, now, ttl_s, cap, PER_PERSON]


class Noter:
    """Counts a view or cart add: ``NOTE`` in one script on one Redis; on a cluster ``NOTE_PERSON``
    then ``NOTE_ITEM``, each in its own slot."""

    def __init__(self, redis: Redis, ttl_s: int, cap: int) -> None:
        self._cluster = cluster.on_cluster(redis)
        self._ttl_s, self._cap = ttl_s, cap
        self._note = redis.register_script(NOTE)
        self._person = redis.register_script(NOTE_PERSON)
        self._item = redis.register_script(NOTE_ITEM)

    async def queue(self, pipe: Pipeline, person: str, item_id: str, carted: bool, now: float) -> None:
        """One Redis: queued on ``pipe`` (the hook's pipeline)."""
        names, values = note_args(person, item_id, carted, now, self._ttl_s, self._cap)
        await self._note(keys=names, args=values, client=pipe)

    async def note(self, person: str, item_id: str, carted: bool, now: float) -> None:
        """On a cluster: the person's count, then (when counted) the item's entry."""
        if await self.count(None, person, item_id, carted):
            await self.index(None, person, item_id, now)

    async def count(self, pipe: Any, person: str, item_id: str, carted: bool) -> Any:
        """The first step (``NOTE_PERSON``), queued on ``pipe`` when given: 1 when counted."""
        field = f"+{item_id}" if carted else item_id
        return await cluster.call(self._person, [keys.viewed_items(person)], [field, self._ttl_s, PER_PERSON], pipe)

    async def index(self, pipe: Any, person: str, item_id: str, now: float) -> Any:
        """The second step (``NOTE_ITEM``), queued on ``pipe`` when given."""
        return await cluster.call(self._item, [keys.item_viewers(item_id)], [person, now, self._ttl_s, self._cap], pipe)


async def viewers(redis: Redis, item_id: str) -> list[Viewer]:
    """The people who viewed or carted ``item_id`` within the TTL, with their counts; entries whose
    person's counts are gone (expired, erased) are dropped from the index."""
    index = keys.item_viewers(item_id)
    members = [m.decode() if isinstance(m, bytes) else m for m in await redis.zrevrange(index, 0, -1)]
    found: list[Viewer] = []
    stale: list[str] = []
    for start in range(0, len(members), READ):
        chunk = members[start:start + READ]
        async with redis.pipeline(transaction=False) as pipe:
            for person in chunk:
                pipe.hmget(keys.viewed_items(person), [item_id, f"+{item_id}"])
            replies = await pipe.execute()
        for person, (views, carts) in zip(chunk, replies):
            if views is None and carts is None:
                stale.append(person)
            else:
                found.append(Viewer(person, int(views or 0), int(carts or 0)))
    if stale:
        await redis.zrem(index, *stale)
    return found


async def unindex(redis: Redis, people: list[str]) -> None:
    """Remove the people's entries from every item's viewers (an erasure: before their counts go)."""
    if not people:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for person in people:
            pipe.hkeys(keys.viewed_items(person))
        fields = await pipe.execute()
    async with redis.pipeline(transaction=cluster.transactions(redis)) as pipe:
        for person, names in zip(people, fields):
            for item in {name[1:] if name.startswith("+") else name
                         for name in (f.decode() if isinstance(f, bytes) else f for f in names)}:
                pipe.zrem(keys.item_viewers(item), person)
        await pipe.execute()
