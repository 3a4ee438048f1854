"""Merging customers against a real Redis: atomic against concurrent events, idempotent, aliases
followed by the applier and the request path, chains of merges, automatic merges on login."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from engine.customers.logins import emails, match
from engine.customers.merge import Merged, MergeRefused, merge, merged_ids
from engine.profiles.store import load_profiles
from engine.store import keys
from tests.engine.ingest.test_apply import applier, customer, ev, run, visitor

SHA = "ab" * 32


def merge_(redis: Redis, into: str, sources: list[str]) -> object:
    return merge(redis, into, sources, by="test", auto=False, now=1.0, customer_ttl_s=7200, visitor_ttl_s=3600,
                 half_life_s=86400.0)


def test_a_merge_racing_with_events_counts_every_order_once(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        apps = [applier(Redis.from_url(redis_url)) for _ in range(3)]
        await apps[0].apply([ev("purchase", visitor="va", customer_id="A", item_id="a", price=1.0),
                             ev("purchase", visitor="vb", customer_id="B", item_id="b", price=2.0)])
        events = [ev("purchase", visitor=f"vb{i % 3}", customer_id="B" if i % 2 else "A", item_id="a", price=1.0)
                  for i in range(60)]
        chunks = [events[i:i + 4] for i in range(0, 60, 4)]
        jobs = [apps[n % 3].apply(c) for n, c in enumerate(chunks + chunks)]  # every event delivered twice
        results = await asyncio.gather(merge_(redis, "A", ["B"]), *jobs)
        assert results[0].merged == ["B"]
        a = await customer(redis, "A")
        assert a.orders == 62 and a.revenue == 63.0
        assert not await redis.exists(keys.customer("B"))
        assert (await visitor(redis, "vb")).customer_id == "A"  # its cookie relinked
        again = await merge_(redis, "A", ["B"])
        assert (again.merged, again.already) == ([], ["B"])
        assert (await customer(redis, "A")).orders == 62
        await redis.aclose()

    run(scenario())


def test_aliases_are_followed_by_reads_and_survive_a_second_merge(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        await app.apply([ev("login", visitor=v, customer_id=c) for v, c in (("v1", "A"), ("v2", "B"), ("v3", "Z"))])
        await merge_(redis, "A", ["B"])
        # A token for B on a new device reads A's profile.
        _, c, cid = await load_profiles(redis.mget, "v9", "B")
        assert cid == "A" and c is not None and c.visitors
        assert (await merge_(redis, "Z", ["A"])).merged == ["A"]
        assert await redis.get(keys.alias("B")) == b"Z"  # B followed A into Z
        assert set(await merged_ids(redis, "Z")) == {"A", "B"}
        await app.apply([ev("purchase", visitor="v8", customer_id="B", item_id="a", price=1.0)])
        assert (await customer(redis, "Z")).orders == 1
        assert not await redis.exists(keys.customer("B")) and not await redis.exists(keys.customer("A"))
        assert (await merge_(redis, "B", ["Z"])).already == ["Z"]  # the other way round: a no-op
        with pytest.raises(MergeRefused) as refused:
            await merge_(redis, "Z", ["nobody"])
        assert (refused.value.status, refused.value.field) == (404, "from[0]")
        with pytest.raises(MergeRefused) as refused:
            await merge_(redis, "Z", ["A", "Z"])
        assert (refused.value.status, refused.value.field) == (422, "from[1]")
        await redis.aclose()

    run(scenario())


def test_a_shared_email_hash_merges_into_the_older_record(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        app = applier(redis)
        first = [ev("login", visitor="o1", customer_id="old", ts=1_700_000_000.0, properties={"email_sha256": SHA}),
                 ev("purchase", visitor="o1", item_id="a", price=1.0, ts=1_700_000_001.0)]
        then = [ev("login", visitor="n1", customer_id="new", properties={"email_sha256": SHA.upper()}),
                ev("purchase", visitor="n1", item_id="b", price=2.0)]
        done: list[Merged] = []

        async def merger(into: str, sources: list[str]) -> Merged:
            done.append(await merge_(redis, into, sources))
            return done[-1]

        for batch in (first, then):
            await app.apply(batch)
            await match(redis, emails(batch), merger)
        assert [(m.into, m.merged) for m in done] == [("old", ["new"])]
        assert (await customer(redis, "old")).orders == 2
        await match(redis, emails(then), merger)  # the same login again: nothing more
        assert len(done) == 1 and (await customer(redis, "old")).orders == 2
        assert await redis.hexists(keys.identity("old"), f"e:{SHA}")
        await redis.aclose()

    run(scenario())
