"""The event applier on a real three-primary Redis Cluster (tests/redis_cluster.py): every script
in one slot, a login stitching a cookie to a customer, a crash between the customer's write and
the visitor's, and a primary killed mid-stream with its replica promoted."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis, RedisCluster

from engine.catalog import ItemInfo
from engine.customers import people
from engine.events.schema import Event
from engine.ingest.apply import EventApplier, transient
from engine.ingest.cluster import ClusterApplier, NotReplicated
from engine.profiles.shapes import ProfileConfig
from engine.ranking.trending import TrendingClock
from engine.store import keys
from engine.store.connect import connect_cluster
from tests.redis_cluster import Cluster, start_cluster

INFO = {f"i{n}": ItemInfo("c.x", None, 1.0) for n in range(10)}
_ids = itertools.count()


def ev(type_: str, visitor: str, ts: float, **fields: object) -> Event:
    return Event(event_id=f"e{next(_ids)}", type=type_, visitor_id=visitor, ts=ts, rt=ts, **fields)


def applier(redis: RedisCluster, replicas: int = 1) -> ClusterApplier:
    return ClusterApplier(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                          dedup_window_s=600, trending_clock=TrendingClock(3600), replicas=replicas)


async def reference(redis_url: str, batches: list[list[Event]], wanted: list[str]) -> dict[str, bytes | None]:
    """What the same batches, each applied once, leave on one Redis: the profiles to expect."""
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    one = EventApplier(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                       dedup_window_s=600, trending_clock=TrendingClock(3600))
    for batch in batches:
        await one.apply(batch)
    stored = {key: await redis.get(key) for key in wanted}
    await redis.aclose()
    assert all(stored.values())
    return stored


async def stored(redis: RedisCluster, wanted: list[str]) -> dict[str, bytes | None]:
    return {key: await redis.get(key) for key in wanted}


def test_login_stitches_across_slots_exactly_once(cluster: Cluster, redis_url: str) -> None:
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        app = applier(redis)
        vid, cid = "cookie-a", "cust-a"
        assert redis.keyslot(keys.visitor(vid)) != redis.keyslot(keys.customer(cid))
        batch = [ev("product_view", vid, 1000.0 + n, item_id=f"i{n % 3}") for n in range(4)]
        batch.append(ev("login", vid, 1010.0, customer_id=cid))
        batch.append(ev("product_view", vid, 1011.0, item_id="i5"))
        stats = await app.apply(batch)
        assert (stats.applied, stats.duplicates) == (6, 0)
        wanted = [keys.visitor(vid), keys.customer(cid)]
        expected = await reference(redis_url, [batch], wanted)
        assert await stored(redis, wanted) == expected
        again = await app.apply(batch)  # a redelivery changes nothing
        assert (again.applied, again.duplicates) == (0, 6)
        assert await stored(redis, wanted) == expected
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_crash_between_customer_and_visitor_writes(cluster: Cluster, redis_url: str) -> None:
    """The customer's write lands, the visitor's does not (the process dies in between): applying
    the same events again gives the customer each event once and the visitor each event once."""

    class Crashing(ClusterApplier):
        async def _run(self, script, calls, *, wait):  # noqa: ANN001, ANN202
            if wait and calls and keys.visitor("cookie-b") in calls[0][0]:
                raise ConnectionError("killed before the visitor's write")
            return await super()._run(script, calls, wait=wait)

    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        vid, cid = "cookie-b", "cust-b"
        now = time.time()  # recent events: trending counts them
        login = [ev("login", vid, now - 10, customer_id=cid)]
        await applier(redis).apply(login)
        batch = [ev("add_to_cart", vid, now - 5 + n, item_id="i1", quantity=1) for n in range(3)]
        crashing = Crashing(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                            dedup_window_s=600, trending_clock=TrendingClock(3600))
        wanted = [keys.visitor(vid), keys.customer(cid)]
        before = await stored(redis, wanted)
        with pytest.raises(ConnectionError):
            await crashing.apply(batch)
        after_crash = await stored(redis, wanted)
        assert after_crash[keys.customer(cid)] != before[keys.customer(cid)]  # written before the crash
        assert after_crash[keys.visitor(vid)] == before[keys.visitor(vid)]
        stats = await applier(redis).apply(batch)  # the retry
        assert stats.applied == 3
        assert await stored(redis, wanted) == await reference(redis_url, [login, batch], wanted)
        trending = keys.trending(TrendingClock(3600).epoch(now))  # counted before the crash, once
        one = Redis.from_url(redis_url)
        assert await redis.zrange(trending, 0, -1, withscores=True) == await one.zrange(trending, 0, -1,
                                                                                        withscores=True)
        assert await one.zscore(trending, "i1")
        await one.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_primary_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path, redis_url: str) -> None:
    """A stream of batches applied at least once (a failed batch is retried whole, as a worker
    does); a primary is SIGKILLed halfway and its replica promoted. Every visitor and customer ends
    with exactly the views sent."""
    own = start_cluster(tmp_path / "failover")
    try:
        asyncio.run(_stream_through_failover(own, redis_url))
    finally:
        own.stop()


async def _stream_through_failover(cluster: Cluster, redis_url: str) -> None:
    redis = connect_cluster(cluster.url, timeout_s=2)
    app = applier(redis)
    visitors = [f"vis{n}" for n in range(30)]
    customer_of = {vid: f"cus{n % 10}" for n, vid in enumerate(visitors)}  # three cookies per customer
    batches = [[ev("login", vid, 3000.0, customer_id=customer_of[vid]) for vid in visitors]]
    await app.apply(batches[0])
    victim = cluster.primary_of(keys.visitor(visitors[0]))
    retries = 0
    for n in range(40):
        batch = [ev("add_to_cart", vid, 3001.0 + n, item_id=f"i{n % 4}", quantity=1) for vid in visitors[n % 3::3]]
        batches.append(batch)
        if n == 20:
            cluster.kill(victim)
        while True:
            try:
                await app.apply(batch)
                break
            except Exception as exc:  # noqa: BLE001 - a worker retries what is transient
                assert transient(exc), exc
                retries += 1
                if isinstance(exc, NotReplicated) and victim.process.poll() is not None:
                    victim = cluster.restart(victim)  # promoted, the replica has no replica until the old primary is back
                await asyncio.sleep(0.2)
    assert retries > 0  # the kill did interrupt the stream
    cluster.wait_healthy()
    wanted = [keys.visitor(vid) for vid in visitors] + [keys.customer(c) for c in sorted(set(customer_of.values()))]
    assert await stored(redis, wanted) == await reference(redis_url, batches, wanted)
    await app.aclose()
    await redis.aclose()


def test_events_waiting_when_a_person_is_erased_are_dropped(cluster: Cluster, tmp_path: Path) -> None:
    """The erasure tombstones sit in each profile's slot: the cluster applier drops a visitor's and a
    customer's waiting events as one Redis does, and a later event starts afresh."""
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        app = applier(redis)
        vid, cid, t0 = "cookie-e", "cust-e", time.time() - 30 * 86400  # too old for trending
        assert redis.keyslot(keys.visitor(vid)) != redis.keyslot(keys.customer(cid))
        assert redis.keyslot(keys.erasure(keys.visitor(vid))) == redis.keyslot(keys.visitor(vid))
        assert redis.keyslot(keys.erasure(keys.customer(cid))) == redis.keyslot(keys.customer(cid))
        await app.apply([ev("login", vid, t0, customer_id=cid), ev("product_view", vid, t0 + 1, item_id="i1")])
        await people.erase(redis, await people.find(redis, vid), log_dir=tmp_path, dedup_window_s=600, now=time.time())
        stats = await app.apply([ev("product_view", vid, t0 + 2, item_id="i2"),
                                 ev("add_to_cart", "cookie-e2", t0 + 3, item_id="i3", customer_id=cid)])
        assert (stats.applied, stats.erased) == (0, 2)
        assert await stored(redis, [keys.visitor(vid), keys.visitor("cookie-e2"), keys.customer(cid)]) == dict.fromkeys(
            [keys.visitor(vid), keys.visitor("cookie-e2"), keys.customer(cid)])
        assert (await app.apply([ev("login", vid, time.time() + 1, customer_id="cust-e3")])).applied == 1
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())
