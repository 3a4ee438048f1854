"""Customer merges on a real three-primary Redis Cluster (tests/redis_cluster.py): two customers in
different slots merged by a login with the same hashed email end as on one Redis, and a merge
interrupted after any of its single-slot steps is completed by the redelivered login, or by the
sweep when nobody retries it, with nothing lost or counted twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis, RedisCluster

from engine.customers import audit, merge_apart
from engine.customers.combine import combine
from engine.customers.logins import emails, match
from engine.customers.merge import Apart, Merged, merge, sweep
from engine.customers.people import find
from engine.events.schema import Event
from engine.ingest.apply import EventApplier, transient
from engine.profiles.codec import decode_dict, encode
from engine.profiles.shapes import CustomerProfile, ProfileConfig
from engine.ranking.trending import TrendingClock
from engine.runtime import Engine
from engine.store import keys
from engine.store.connect import connect_cluster
from engine.ingest.cluster import ClusterApplier
from tests.conftest import make_settings
from tests.engine.ingest.test_cluster import INFO, ev
from tests.redis_cluster import Cluster, start_cluster

SHA = "cd" * 32
WINDOW = 600
HALF_LIFE = 86400.0
COOKIES = ("o1", "o2", "n1")


def logins_of(redis: Redis | RedisCluster, done: list[Merged]) -> Callable[[list[Event]], Awaitable[None]]:
    """The applier's login hook, merging with the test's settings."""
    async def merger(into: str, sources: list[str]) -> Merged:
        done.append(await merge(redis, into, sources, by="login", auto=True, now=1.0, customer_ttl_s=7200,
                                visitor_ttl_s=3600, half_life_s=HALF_LIFE, apart=Apart(WINDOW, 1, 5.0)))
        return done[-1]

    async def hook(events: list[Event]) -> None:
        await match(redis, emails(events), merger)
    return hook


def applier(redis: RedisCluster, logins: Callable[[list[Event]], Awaitable[None]] | None) -> ClusterApplier:
    return ClusterApplier(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                          dedup_window_s=WINDOW, trending_clock=TrendingClock(3600), logins=logins)


def batches() -> list[list[Event]]:
    """An older customer on two cookies, then a newer one logging in with the same hashed email."""
    t = time.time() - 300
    return [
        [ev("login", "o1", t, customer_id="old", properties={"email_sha256": SHA}),
         ev("purchase", "o1", t + 1, item_id="i1", price=3.0), ev("product_view", "o1", t + 2, item_id="i2"),
         ev("login", "o2", t + 3, customer_id="old")],
        [ev("login", "n1", t + 10, customer_id="new"), ev("purchase", "n1", t + 11, item_id="i3", price=2.0),
         ev("add_to_cart", "n1", t + 12, item_id="i4", quantity=1)],
        [ev("login", "n1", t + 20, customer_id="new", properties={"email_sha256": SHA}),
         ev("purchase", "n1", t + 21, item_id="i5", price=5.0)],
    ]


async def state(redis: Redis | RedisCluster) -> dict[str, object]:
    """Everything a merge writes, and what an export or erasure finds for each id."""
    out: dict[str, object] = {k: await redis.get(k) for k in (
        keys.customer("old"), keys.customer("new"), keys.alias("new"), keys.alias("old"), *map(keys.visitor, COOKIES))}
    out["identity"] = await redis.hgetall(keys.identity("old"))
    out["identity:new"] = await redis.hgetall(keys.identity("new"))
    out["pending"] = await redis.exists(keys.merging("new"))
    out["person"] = [await find(redis, person) for person in ("new", "old", "n1")]
    return out


async def reference(redis_url: str, applied: list[list[Event]]) -> dict[str, object]:
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    done: list[Merged] = []
    one = EventApplier(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                       dedup_window_s=WINDOW, trending_clock=TrendingClock(3600), logins=logins_of(redis, done))
    for batch in applied:
        await one.apply(batch)
    assert [(m.into, m.merged) for m in done] == [("old", ["new"])]
    expected = await state(redis)
    await redis.aclose()
    return expected


def test_a_login_merges_customers_of_different_slots_as_on_one_redis(cluster: Cluster, redis_url: str) -> None:
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        assert cluster.primary_of(keys.customer("old")).port != cluster.primary_of(keys.customer("new")).port
        events = batches()
        done: list[Merged] = []
        app = applier(redis, logins_of(redis, done))
        for batch in events:
            await app.apply(batch)
        assert [(m.into, m.merged) for m in done] == [("old", ["new"])]
        expected = await reference(redis_url, events)
        got = await state(redis)
        assert got == expected
        assert CustomerProfile.decode(got[keys.customer("old")]).orders == 3  # type: ignore[arg-type]
        assert got[keys.alias("new")] == b"old" and not got["pending"]
        merged = orjson.loads(got["identity"][b"m:new"])  # type: ignore[index]
        assert merged == {"at": 1.0, "by": "login", "auto": True}
        # The login redelivered changes nothing; a later one merges nothing more.
        await app.apply(events[2])
        assert await state(redis) == expected
        await app.apply([ev("login", "n1", time.time(), customer_id="new", properties={"email_sha256": SHA})])
        after = await state(redis)
        assert [m.merged for m in done if m.merged] == [["new"]]
        kept = ("identity", "identity:new", "pending", keys.alias("new"), keys.customer("new"))
        assert {k: after[k] for k in kept} == {k: expected[k] for k in kept}
        assert CustomerProfile.decode(after[keys.customer("old")]).orders == 3  # type: ignore[arg-type]
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())


async def interrupted(redis: RedisCluster, app: ClusterApplier, reached: str) -> list[list[Event]]:
    """The events of ``batches`` applied, the last one by a process that died after the merge step
    ``reached``; returns the events."""
    events = batches()
    for batch in events[:2]:  # the older customer's hash is indexed
        await app.apply(batch)
    dying = applier(redis, None)  # the process dies before its login merge: run step by step below
    await dying.apply(events[2])
    await dying.aclose()
    bucket = int(time.time() // WINDOW)
    history = orjson.dumps({"at": 1.0, "by": "login", "auto": True})
    sealed = await merge_apart.seal(redis, "new", "old", history, bucket, replicas=1, timeout_s=5.0)
    assert isinstance(sealed, merge_apart.Sealed) and sealed.fingerprints  # the events already in it
    assert await merge_apart.seal(redis, "new", "old", history, bucket, replicas=1, timeout_s=5.0) == sealed
    if reached in ("absorb", "relink"):
        old = await redis.get(keys.customer("old"))
        new = encode(combine(CustomerProfile.decode(old), CustomerProfile.decode(sealed.profile), HALF_LIFE))
        assert await merge_apart.absorb(redis, sealed, "old", old, new, ttl_s=7200, window_s=WINDOW,
                                        replicas=1, timeout_s=5.0) == 2
    if reached == "relink":
        await merge_apart.repoint(redis, ["new"], "old")
        assert await merge_apart.relink(redis, ["n1"], "new", "old", ttl_s=3600, replicas=1, timeout_s=5.0,
                                        rounds=4)
    left = await state(redis)
    assert left[keys.alias("new")] == b"old" and left["pending"] and left[keys.customer("new")] is None
    assert await redis.zrange(keys.merges_pending(), 0, -1) == [b"new"]
    return events


@pytest.mark.parametrize("reached", ["seal", "absorb", "relink"])
def test_a_merge_interrupted_after_any_step_is_completed_by_the_redelivered_login(
        cluster: Cluster, redis_url: str, reached: str) -> None:
    """The process dies after ``reached``: the state left reads through the alias, and the login
    applied again completes the merge, ending as on one Redis with every order counted once."""
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        done: list[Merged] = []
        app = applier(redis, logins_of(redis, done))
        events = await interrupted(redis, app, reached)
        await app.apply(events[2])  # redelivered: every event a duplicate, the login matched again
        assert [(m.into, m.merged) for m in done if m.merged] == [("old", ["new"])]
        assert await state(redis) == await reference(redis_url, events)
        assert CustomerProfile.decode(await redis.get(keys.customer("old"))).orders == 3
        assert not await redis.exists(keys.merges_pending())
        # The dedup memory moved with the profile: the newer customer's purchase arriving where its
        # visitor has no record of it (as after a crash between the applier's customer write and its
        # visitor write), now redirected to the survivor, is not counted a second time.
        await app.apply([events[1][1].model_copy(update={"visitor_id": "n9", "customer_id": "new"})])
        assert CustomerProfile.decode(await redis.get(keys.customer("old"))).orders == 3
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("reached", ["seal", "absorb", "relink"])
def test_a_merge_interrupted_and_never_retried_is_completed_by_the_sweep(
        cluster: Cluster, redis_url: str, tmp_path: Path, reached: str) -> None:
    """Nobody logs in again: the sweep leaves the merge while it is young (its attempt may still be
    running), then completes it once however many processes sweep at once, as on one Redis."""
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        settings = make_settings(tmp_path, cluster.url, redis_cluster=True, customer_ttl_s=7200, visitor_ttl_s=3600,
                                 affinity_half_life_s=HALF_LIFE, dedup_window_s=WINDOW, merge_sweep_s=60)
        done: list[Merged] = []
        app = applier(redis, logins_of(redis, done))
        events = await interrupted(redis, app, reached)
        await redis.zadd(keys.merges_pending(), {"erased-since": 1.0})  # listed, its record gone
        assert await sweep(redis, settings) == []
        later = time.time() + 61
        swept = await asyncio.gather(*(sweep(redis, settings, now=later) for _ in range(3)))
        assert sorted(swept, key=len) == [[], [], ["new"]]
        expected = await reference(redis_url, events)
        assert await state(redis) == expected
        assert not await redis.exists(keys.merges_pending())
        [entry] = [e for e in audit.read(tmp_path) if e["action"] == "merge"]
        assert (entry["by"], entry["auto"], entry["completed_by"]) == ("login", True, "sweep")
        await app.apply(events[2])  # the login comes after all: nothing more to do
        assert await state(redis) == expected and not [m for m in done if m.merged]
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_process_on_a_cluster_sweeps_the_merges_left_pending(cluster: Cluster, tmp_path: Path) -> None:
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        app = applier(redis, None)
        await interrupted(redis, app, "seal")
        engine = Engine(make_settings(tmp_path, cluster.url, redis_cluster=True, merge_sweep_s=0.5), cluster.url)
        await engine.start()
        try:
            for _ in range(300):  # up to 30 s on a loaded machine
                if not await redis.exists(keys.merging("new"), keys.merges_pending()):
                    break
                await asyncio.sleep(0.1)
            assert not await redis.exists(keys.merging("new"), keys.merges_pending())
            assert CustomerProfile.decode(await redis.get(keys.customer("old"))).orders == 3
        finally:
            await engine.stop()
        await app.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_merge_racing_with_events_counts_every_order_once(cluster: Cluster) -> None:
    """Three appliers deliver every event twice while the merge runs: each step's compare-and-set
    or the seal's tombstone sends the loser back to re-read, so every order counts once."""
    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        clients = [connect_cluster(cluster.url, timeout_s=5) for _ in range(3)]
        apps = [applier(client, None) for client in clients]
        t = time.time() - 120
        await apps[0].apply([ev("purchase", "va", t, customer_id="old", item_id="i1", price=1.0),
                             ev("purchase", "vb", t, customer_id="new", item_id="i2", price=2.0)])
        events = [ev("purchase", f"vb{i % 3}", t + i, customer_id="new" if i % 2 else "old", item_id="i1", price=1.0)
                  for i in range(60)]
        chunks = [events[i:i + 4] for i in range(0, 60, 4)]
        jobs = [apps[n % 3].apply(c) for n, c in enumerate(chunks + chunks)]  # every event delivered twice
        results = await asyncio.gather(merge(redis, "old", ["new"], by="test", auto=False, now=1.0,
                                             customer_ttl_s=7200, visitor_ttl_s=3600, half_life_s=HALF_LIFE,
                                             apart=Apart(WINDOW, 1, 5.0)), *jobs)
        assert results[0].merged == ["new"]
        survivor = CustomerProfile.decode(await redis.get(keys.customer("old")))
        assert (survivor.orders, survivor.revenue) == (62, 63.0)
        assert not await redis.exists(keys.customer("new"), keys.merging("new"))
        assert await redis.get(keys.alias("new")) == b"old"
        for cookie in ("vb", "vb0", "vb1", "vb2"):  # relinked, by the merge or by their next event
            assert decode_dict(await redis.get(keys.visitor(cookie)))["c"] == "old"
        again = await merge(redis, "old", ["new"], by="test", auto=False, now=2.0, customer_ttl_s=7200,
                            visitor_ttl_s=3600, half_life_s=HALF_LIFE, apart=Apart(WINDOW, 1, 5.0))
        assert (again.merged, again.already) == ([], ["new"])
        assert CustomerProfile.decode(await redis.get(keys.customer("old"))).orders == 62
        for app, client in zip(apps, clients):
            await app.aclose()
            await client.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_a_sealed_merge_survives_a_failover_and_is_completed(tmp_path: Path, redis_url: str) -> None:
    """The seal waited for a replica: SIGKILL the primary holding the pending record, let its
    replica take over, and the redelivered login completes the merge as on one Redis."""
    own = start_cluster(tmp_path / "failover")
    try:
        asyncio.run(_seal_then_failover(own, redis_url))
    finally:
        own.stop()


async def _seal_then_failover(cluster: Cluster, redis_url: str) -> None:
    redis = connect_cluster(cluster.url, timeout_s=2)
    events = batches()
    done: list[Merged] = []
    app = applier(redis, logins_of(redis, done))
    for batch in events[:2]:
        await app.apply(batch)
    dying = applier(redis, None)
    await dying.apply(events[2])
    await dying.aclose()
    history = orjson.dumps({"at": 1.0, "by": "login", "auto": True})
    sealed = await merge_apart.seal(redis, "new", "old", history, int(time.time() // WINDOW), replicas=1,
                                    timeout_s=2.0)
    assert isinstance(sealed, merge_apart.Sealed)
    victim = cluster.primary_of(keys.merging("new"))
    cluster.kill(victim)
    cluster.wait_healthy(timeout_s=90)  # the replica's election: slower on a loaded machine
    cluster.restart(victim)  # back as the promoted replica's replica: writes can be replicated again
    after = connect_cluster(cluster.url, timeout_s=2)
    assert await merge_apart.pending(after, "new") == sealed  # the promoted replica holds the seal
    assert (await after.get(keys.alias("new")), await after.get(keys.customer("new"))) == (b"old", None)
    await after.aclose()
    for _ in range(100):
        try:
            await app.apply(events[2])  # redelivered
            break
        except Exception as exc:  # noqa: BLE001 - a worker retries what is transient
            assert transient(exc), exc
            await asyncio.sleep(0.2)
    assert [(m.into, m.merged) for m in done if m.merged] == [("old", ["new"])]
    assert await state(redis) == await reference(redis_url, events)
    await app.aclose()
    await redis.aclose()


def test_an_event_half_applied_before_the_seal_and_retried_before_the_absorb_counts_once(cluster: Cluster) -> None:
    """The purchase reached the customer's profile but not the visitor's (a crash in between); the
    customer is sealed; the retried purchase follows the alias to a survivor that has not absorbed
    it yet. The fingerprint in the merged-away id's dedup memory tells the applier the survivor is
    getting it with the sealed profile: the visitor takes it, the survivor once."""
    class Crashing(ClusterApplier):
        async def _run(self, script, calls, *, wait):  # noqa: ANN001, ANN202
            if wait and calls and keys.visitor("hv") in calls[0][0]:
                raise ConnectionError("killed before the visitor's write")
            return await super()._run(script, calls, wait=wait)

    async def scenario() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        app = applier(redis, None)
        t = time.time() - 60
        await app.apply([ev("purchase", "ho", t, customer_id="old", item_id="i1", price=1.0),
                         ev("login", "hv", t, customer_id="new")])
        purchase = [ev("purchase", "hv", t + 1, customer_id="new", item_id="i2", price=2.0)]
        crashing = Crashing(redis, INFO.get, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=7200,
                            dedup_window_s=WINDOW, trending_clock=TrendingClock(3600))
        with pytest.raises(ConnectionError):
            await crashing.apply(purchase)
        history = orjson.dumps({"at": 1.0, "by": "test", "auto": False})
        sealed = await merge_apart.seal(redis, "new", "old", history, int(time.time() // WINDOW), replicas=1,
                                        timeout_s=5.0)
        assert isinstance(sealed, merge_apart.Sealed) and CustomerProfile.decode(sealed.profile).orders == 1
        assert (await app.apply(purchase)).applied == 1  # the retry, before the survivor absorbed
        assert CustomerProfile.decode(await redis.get(keys.customer("old"))).orders == 1
        result = await merge(redis, "old", ["new"], by="test", auto=False, now=1.0, customer_ttl_s=7200,
                             visitor_ttl_s=3600, half_life_s=HALF_LIFE, apart=Apart(WINDOW, 1, 5.0))
        assert result.merged == ["new"]
        survivor = CustomerProfile.decode(await redis.get(keys.customer("old")))
        assert (survivor.orders, survivor.revenue) == (2, 3.0)
        await app.aclose()
        await crashing.aclose()
        await redis.aclose()

    asyncio.run(scenario())
