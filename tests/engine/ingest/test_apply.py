"""Applying events to a real Redis: exactly once, concurrent writers, stitching, trending."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from redis.asyncio import Redis

from engine.customers import people
from engine.store import keys
from engine.ingest.apply import EventApplier, contention_pause
from engine.events.schema import Event
from engine.catalog import ItemInfo
from engine.profiles.shapes import CustomerProfile, ProfileConfig, VisitorProfile
from engine.ranking.trending import TrendingClock, TrendingReader

_ids = itertools.count()
INFO = {"a": ItemInfo("c.x", None, 1.0), "b": ItemInfo("c.y", None, 2.0)}


def ev(type_: str, visitor: str = "v1", event_id: str | None = None, ts: float | None = None,
       **fields: object) -> Event:
    now = time.time() if ts is None else ts
    return Event(event_id=event_id or f"e{next(_ids)}", type=type_, visitor_id=visitor, ts=now, rt=now, **fields)


def applier(redis: Redis) -> EventApplier:
    return EventApplier(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                        dedup_window_s=600, trending_clock=TrendingClock(3600))


async def visitor(redis: Redis, vid: str = "v1") -> VisitorProfile:
    raw = await redis.get(keys.visitor(vid))
    return VisitorProfile.decode(raw)


async def customer(redis: Redis, cid: str) -> CustomerProfile:
    raw = await redis.get(keys.customer(cid))
    return CustomerProfile.decode(raw)


def run(coro):  # noqa: ANN001, ANN201 - tiny helper
    return asyncio.run(coro)


def test_replayed_events_change_nothing(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        batch = [ev("add_to_cart", event_id="x1", item_id="a", quantity=2),
                 ev("purchase", event_id="x2", item_id="a", quantity=1, price=3.0)]
        first = await app.apply(batch)
        assert (first.applied, first.duplicates) == (2, 0)
        before = await redis.get(keys.visitor("v1"))
        again = await app.apply(batch)
        assert (again.applied, again.duplicates) == (0, 2)
        assert await redis.get(keys.visitor("v1")) == before
        # The same id twice inside one batch counts once.
        dup = ev("purchase", event_id="x3", item_id="b", price=2.0)
        stats = await app.apply([dup, dup])
        assert (stats.applied, stats.duplicates) == (1, 1)
        v = await visitor(redis)
        assert v.orders == 2 and v.revenue == 5.0
        await redis.aclose()

    run(scenario())


def test_a_redelivered_backlog_with_each_event_twice_applies_in_one_round(redis_url: str) -> None:
    """A client retry or a redelivery interleaves copies with new events: each copy is skipped where
    it stands, and the rest of the visitor's events still fold in the same round."""
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        await app.apply([ev("add_to_cart", visitor="vr", event_id="r0", item_id="a")])  # applied before
        events = [ev("add_to_cart", visitor="vr", event_id=f"r{n}", item_id="a") for n in range(40)]
        stats = await app.apply([e for event in events for e in (event, event)])
        assert (stats.applied, stats.duplicates, stats.rounds) == (39, 41, 1)
        assert (await visitor(redis, "vr")).cart == {"a": 40}
        await redis.aclose()

    run(scenario())


def test_concurrent_appliers_lose_no_update_and_count_nothing_twice(redis_url: str) -> None:
    """Two processes' worth of appliers race on the same visitor and customer, with every event
    delivered twice (at-least-once); the compare-and-set makes the counts exact."""

    async def scenario() -> None:
        clients = [Redis.from_url(redis_url) for _ in range(4)]
        appliers = [applier(c) for c in clients]
        events = [ev("purchase", visitor=f"dev{i % 3}", customer_id="c1", event_id=f"p{i}",
                     item_id="a" if i % 2 else "b", price=1.0) for i in range(60)]
        chunks = [events[i:i + 5] for i in range(0, len(events), 5)]
        jobs = [appliers[n % 4].apply(chunk) for n, chunk in enumerate(chunks + chunks)]
        results = await asyncio.gather(*jobs)
        assert sum(r.applied for r in results) == 60
        assert sum(r.duplicates for r in results) == 60
        c = await customer(clients[0], "c1")
        assert c.orders == 60 and c.revenue == 60.0
        assert c.purchases == {"a": 30, "b": 30} or c.purchases == {"b": 30, "a": 30}
        assert sorted(c.visitors) == ["dev0", "dev1", "dev2"]
        for client in clients:
            await client.aclose()

    run(scenario())


def test_many_writers_on_one_customer_each_get_through_within_their_rounds(redis_url: str) -> None:
    """A customer written from many places at once: writers that lost a compare-and-set together
    wait apart before re-reading, so they do not collide again round after round."""
    async def scenario() -> None:
        clients = [Redis.from_url(redis_url) for _ in range(4)]
        appliers = [applier(c) for c in clients]
        jobs = [appliers[n % 4].apply([ev("purchase", visitor=f"hot{n}", customer_id="c-hot", item_id="a", price=1.0)])
                for n in range(32)]
        results = await asyncio.gather(*jobs)
        assert sum(r.applied for r in results) == 32
        assert (await customer(clients[0], "c-hot")).orders == 32
        for client in clients:
            await client.aclose()

    run(scenario())


def test_contention_pauses_grow_with_each_round_lost_up_to_a_cap() -> None:
    assert [contention_pause(lost, lambda: 1.0) for lost in (1, 2, 3, 7, 8, 30)] == \
        [0.001, 0.002, 0.004, 0.064, 0.064, 0.064]
    assert contention_pause(5, lambda: 0.0) == 0.0
    assert contention_pause(2, lambda: 0.5) == 0.001


def test_login_in_a_later_batch_reads_the_customer_and_stitches(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        await app.apply([ev("purchase", item_id="a", price=5.0)])
        await app.apply([ev("login", customer_id="c9")])
        # No customer_id on the event: the visitor's link makes it the customer's purchase.
        stats = await app.apply([ev("purchase", item_id="b", price=2.0)])
        assert stats.applied == 1
        c = await customer(redis, "c9")
        v = await visitor(redis)
        assert (c.orders, c.revenue) == (2, 7.0)
        assert v.customer_id == "c9" and v.orders == 0
        assert await redis.ttl(keys.customer("c9")) > 3600
        assert 0 < await redis.ttl(keys.visitor("v1")) <= 3600
        await redis.aclose()

    run(scenario())


def test_trending_reflects_recent_events_and_ignores_old_ones(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        now = time.time()
        await app.apply([ev("product_view", visitor=f"t{i}", item_id="a", ts=now) for i in range(3)]
                        + [ev("add_to_cart", visitor="t9", item_id="b", ts=now)]
                        + [ev("product_view", visitor="old", item_id="old-item", ts=now - 30 * 86400)])
        top = await TrendingReader(redis, TrendingClock(3600)).top(now)
        scores = dict(top)
        assert set(scores) == {"a", "b"}
        assert scores["b"] > scores["a"] > 0  # a cart (weight 4) beats three views (weight 1)
        assert abs(scores["a"] - 3.0) < 0.01
        await redis.aclose()

    run(scenario())


def test_scripts_flushed_from_the_server_are_loaded_again(redis_url: str) -> None:
    """The scripts go as EVALSHA without asking SCRIPT EXISTS first: a server that lost them
    (restarted, SCRIPT FLUSH) answers NOSCRIPT, and the applier loads them and carries on."""
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        await redis.script_flush()
        stats = await app.apply([ev("product_view", visitor="noscript", event_id="ns1", item_id="a")])
        assert stats.applied == 1
        await redis.script_flush()
        again = await app.apply([ev("product_view", visitor="noscript", event_id="ns1", item_id="a"),
                                 ev("product_view", visitor="noscript", event_id="ns2", item_id="b")])
        assert (again.applied, again.duplicates) == (1, 1)
        assert (await visitor(redis, "noscript")).session_items == ["b", "a"]
        await redis.aclose()

    run(scenario())


def test_events_accepted_before_an_erase_are_not_applied(redis_url: str, tmp_path: Path) -> None:
    """What still waits when a person is erased (an apply queue, a Kafka topic) does not bring them
    back: their events accepted up to the erase are dropped, whichever cookie carries them, even when
    the erase lands between the applier's read and its write; later events start a new profile."""
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        t0 = time.time() - 60
        await app.apply([ev("product_view", visitor="ve", item_id="a", ts=t0, customer_id="ce")])
        erased_at = time.time()
        await people.erase(redis, await people.find(redis, "ve"), log_dir=tmp_path, dedup_window_s=600,
                           now=erased_at)
        assert await redis.get(keys.visitor("ve")) is None and await redis.get(keys.customer("ce")) is None
        waiting = [ev("add_to_cart", visitor="ve", item_id="a", ts=t0 + 1),
                   ev("purchase", visitor="ve-phone", item_id="b", price=2.0, ts=t0 + 2, customer_id="ce")]
        stats = await app.apply(waiting)
        assert (stats.applied, stats.erased) == (0, 2)
        for key in (keys.visitor("ve"), keys.visitor("ve-phone"), keys.customer("ce")):
            assert await redis.get(key) is None
        later = ev("product_view", visitor="ve", item_id="b")
        assert (await app.apply([later])).applied == 1 and (await visitor(redis, "ve")).customer_id is None

        class EraseBeforeWriting(EventApplier):
            async def _write(self, plans, bucket):  # noqa: ANN001, ANN202
                if not erasing.done():
                    erasing.set_result(await people.erase(redis, await people.find(redis, "vr"), log_dir=tmp_path,
                                                          dedup_window_s=600, now=time.time()))
                return await super()._write(plans, bucket)
        erasing: asyncio.Future = asyncio.get_running_loop().create_future()
        racing = EraseBeforeWriting(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                                    dedup_window_s=600, trending_clock=TrendingClock(3600))
        stats = await racing.apply([ev("product_view", visitor="vr", item_id="a", ts=time.time() - 1)])
        assert (stats.applied, stats.erased, stats.rounds) == (0, 1, 2)
        assert await redis.get(keys.visitor("vr")) is None
        await redis.aclose()
    run(scenario())
