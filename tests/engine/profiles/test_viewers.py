"""engine.profiles.viewers on a real Redis: the behaviour watchers are counted, bounded (a cap per
item, an age limit, a cap per person), checked as read, and removed by an erasure."""

from __future__ import annotations

import asyncio

import redis.asyncio

from engine.profiles import viewers
from engine.store import keys

NOW = 1_790_000_000.0
DAY = 86400


async def note(r: redis.asyncio.Redis, person: str, item: str, ts: float, *, carted: bool = False, cap: int = 2,
               per_person: int = viewers.PER_PERSON) -> int:
    script = r.register_script(viewers.NOTE)
    note_keys, args = viewers.note_args(person, item, carted, ts, 30 * DAY, cap)
    args[-1] = per_person
    return int(await script(keys=note_keys, args=args))


def test_counted_bounded_checked_and_erased(redis_url: str) -> None:
    async def go() -> None:
        r = redis.asyncio.Redis.from_url(redis_url)
        try:
            await r.flushdb()
            await note(r, "v:old", "i1", NOW - 40 * DAY)  # older than the TTL when the next entry comes
            for _ in range(3):
                await note(r, "v:a", "i1", NOW)
            await note(r, "v:a", "i1", NOW, carted=True)
            await note(r, "c:b", "i1", NOW + 1)
            assert await r.zrange(keys.item_viewers("i1"), 0, -1) == [b"v:a", b"c:b"]
            await note(r, "v:c", "i1", NOW + 2)  # past the cap of 2: the least recent goes
            assert await r.zrange(keys.item_viewers("i1"), 0, -1) == [b"c:b", b"v:c"]
            assert await note(r, "c:b", "i2", NOW, per_person=1) == 0  # c:b counts one item at most
            await r.delete(keys.viewed_items("v:c"))  # expired: its entry is stale
            found = await viewers.viewers(r, "i1")
            assert found == [viewers.Viewer("c:b", 1, 0)]
            assert await r.zrange(keys.item_viewers("i1"), 0, -1) == [b"c:b"]
            assert await r.hgetall(keys.viewed_items("v:a")) == {b"i1": b"3", b"+i1": b"1"}
            await r.zadd(keys.item_viewers("i1"), {"v:a": NOW})
            await viewers.unindex(r, ["v:a"])
            assert await r.zscore(keys.item_viewers("i1"), "v:a") is None
        finally:
            await r.aclose()

    asyncio.run(go())
