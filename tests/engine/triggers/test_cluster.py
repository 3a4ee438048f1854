"""Triggers on a real three-primary Redis Cluster (tests/redis_cluster.py) with a real webhook
receiver: a process dying between a step in a person's slot and the step in ``{tg}`` sends nothing
twice and loses nothing; the viewers index is kept across slots."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.catalog import Item, upsert_changes, upsert_items
from engine.profiles import preferences, viewers
from engine.runtime import Engine
from engine.store import keys
from engine.store.connect import connect_cluster
from engine.triggers import keys as trigger_keys
from tests.engine.triggers.receiver import Receiver
from tests.engine.triggers.test_delivery import SECRET, Clock, event, opt_in
from tests.engine.triggers.test_delivery import run as run_engine
from tests.redis_cluster import Cluster

RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload: {title: "Your cart"}
  restock:
    kind: back_in_stock
    channel: email
    control: 0
  drop:
    kind: price_drop
    min_drop: 10%
    min_views: 2
    channel: email
    control: 0
"""
LAMP = Item(item_id="SKU-L", title="Lamp", price=30.0, in_stock=False)


def run(tmp_path: Path, cluster: Cluster, receiver: Receiver, clock: Clock, body: Any) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    run_with_rules(tmp_path, cluster, receiver, clock, body)


def run_with_rules(tmp_path: Path, cluster: Cluster, receiver: Receiver, clock: Clock, body: Any,
                   **overrides: object) -> None:
    """The engine on the cluster (flushed) with ``tmp_path/rules.yaml``, its runner on ``clock``."""
    async def flush() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        await redis.aclose()

    asyncio.run(flush())
    run_engine(tmp_path, cluster.url, tmp_path / "rules.yaml", body, receiver, clock, redis_cluster=True, **overrides)


def fail_once(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process loses its connection at this point once: what it did before stays written."""
    original = getattr(target, name)

    async def dying(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(target, name, original)
        raise RedisConnectionError("connection lost mid-decision")

    monkeypatch.setattr(target, name, dying)


def test_a_crash_after_the_persons_steps_sends_once(tmp_path: Path, cluster: Cluster,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        redis = engine.redis
        assert cluster.primary_of(keys.trigger_sends("v1")).port != cluster.primary_of("{tg}").port
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 61 * 60
        # Dies after recording the send in the person's caps and their touch, before the {tg} transaction.
        fail_once(runner, "_document", monkeypatch)
        with pytest.raises(RedisConnectionError):
            await runner.tick()
        assert await redis.zcard(keys.trigger_sends("v1")) == 1
        assert await redis.hkeys(keys.trigger_touches("v1")) == [b"cart-reminder"]
        assert await redis.xlen(trigger_keys.names(True).deliveries) == 0
        assert await runner.tick() == (0, 0)  # leased: nobody takes it meanwhile
        clock.now += runner.config.lease_s + 1
        assert await runner.tick() == (1, 1)
        clock.now += 3600
        assert await runner.tick() == (0, 0)
        assert await redis.zcard(keys.trigger_sends("v1")) == 1  # the same send, not counted twice
        assert await redis.xlen(trigger_keys.names(True).deliveries) == 1

    with Receiver(SECRET) as receiver:
        run(tmp_path, cluster, receiver, clock, body)
    assert [(d["trigger"], d["visitor_id"]) for d in receiver.received] == [("cart-reminder", "v1")]


def test_a_crash_between_arming_a_catalogue_change_and_its_removal_arms_once(
        tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(time.time())

    async def body(engine: Engine, runner: Any) -> None:
        redis, changes = engine.redis, engine.catalogue_changes
        await upsert_items(redis, [LAMP])
        await engine.applier.apply([opt_in("v1", time.time())])
        await preferences.save(redis, preferences.Owner("v", "v1"), preferences.Declared(watches=["SKU-L"]),
                               preferences.Declared(), ttl_s=86400, watchers_max=100)
        _, recorded = await upsert_changes(redis, [Item(item_id="SKU-L", in_stock=True)], record=changes.record)
        assert len(recorded) == 1 and await changes.queue.size() == 1
        assert changes.queue.due_key == "{items}:tg:i"
        clock.now = time.time()
        # Dies after arming the occurrence in {tg}, before removing the change from the {items} outbox.
        fail_once(changes.queue, "done", monkeypatch)
        with pytest.raises(RedisConnectionError):
            await changes.run(clock.now)
        assert await changes.queue.size() == 1
        assert await runner.tick() == (1, 1)  # the occurrence armed; the change is leased
        clock.now += 121
        assert await runner.tick() == (0, 0)  # the change claimed again: armed already, removed
        assert await changes.queue.size() == 0
        assert await redis.zcard(trigger_keys.OCCURRENCES) == 0

    with Receiver(SECRET) as receiver:
        run(tmp_path, cluster, receiver, clock, body)
    assert [(d["trigger"], d["visitor_id"]) for d in receiver.received] == [("restock", "v1")]


def test_a_price_drop_reaches_who_viewed_it_through_the_viewers_index(tmp_path: Path, cluster: Cluster) -> None:
    clock = Clock(time.time())

    async def body(engine: Engine, runner: Any) -> None:
        redis = engine.redis
        await upsert_items(redis, [Item(item_id="SKU-V", title="Vase", price=20.0)])
        now = time.time()
        await engine.applier.apply([opt_in("v1", now), opt_in("v2", now),
                                    *[event("product_view", "v1", now + i, item_id="SKU-V") for i in range(2)],
                                    event("product_view", "v2", now, item_id="SKU-V")])
        assert key_slot(keys.item_viewers("SKU-V").encode()) != key_slot(keys.viewed_items("v:v1").encode())
        assert sorted((v.person, v.views) for v in await viewers.viewers(redis, "SKU-V")) == [("v:v1", 2), ("v:v2", 1)]
        # A crash between the person's count and the item's entry: no entry without its count.
        noter = viewers.Noter(redis, 3600, 100)
        await noter._person(keys=[keys.viewed_items("v:v3")], args=["SKU-V", 3600, viewers.PER_PERSON])
        assert "v:v3" not in {v.person for v in await viewers.viewers(redis, "SKU-V")}
        await noter.note("v:v3", "SKU-V", False, time.time())
        assert ("v:v3", 2) in {(v.person, v.views) for v in await viewers.viewers(redis, "SKU-V")}

        _, recorded = await upsert_changes(redis, [Item(item_id="SKU-V", price=15.0)],
                                           record=engine.catalogue_changes.record)
        assert len(recorded) == 1
        clock.now = time.time()
        assert await runner.tick() == (2, 1)  # v1 and v3 viewed it twice (v3 never opted in); v2 once

    with Receiver(SECRET) as receiver:
        run(tmp_path, cluster, receiver, clock, body)
    assert [(d["trigger"], d["visitor_id"]) for d in receiver.received] == [("drop", "v1")]


def test_a_value_tier_and_a_welcome_fire_once_each(tmp_path: Path, cluster: Cluster) -> None:
    t0 = time.time()
    clock = Clock(t0)
    rules = """
triggers:
  upgraded:
    kind: value_tier
    tiers: [bronze, silver, gold]
    direction: up
    channel: email
    control: 0
    payload: {title: "Welcome to {tier|}"}
  hello:
    kind: welcome
    channel: email
    control: 0
"""

    def login(ts: float, tier: str) -> Any:
        return event("login", "v1", ts, customer_id="c1", properties={"tier": tier})

    async def body(engine: Engine, runner: Any) -> None:
        redis = engine.redis
        assert key_slot(keys.trigger_tiers("c1").encode()) != key_slot(b"{tg}")  # one script would be refused
        await engine.applier.apply([opt_in("v1", t0), login(t0 + 1, "bronze")])  # the first tier: recorded
        await engine.applier.apply([login(t0 + 2, "silver"), login(t0 + 3, "silver")])  # swapped in tg:vt:, armed
        clock.now = t0 + 10
        assert await runner.tick() == (1, 1)
        clock.now = t0 + 400  # the welcome, 5 minutes after the first login
        assert await runner.tick() == (1, 1)
        await engine.applier.apply([login(t0 + 500, "silver")])
        clock.now = t0 + 1000
        assert await runner.tick() == (0, 0)
        assert await redis.hgetall(keys.trigger_tiers("c1")) == {b"upgraded": b"silver"}
        assert await redis.hkeys(trigger_keys.names(True).once) == [b"hello|c:c1"]

    (tmp_path / "rules.yaml").write_text(rules)
    with Receiver(SECRET) as receiver:
        run_with_rules(tmp_path, cluster, receiver, clock, body)
    assert [(d["trigger"], d["customer_id"], d["context"]) for d in receiver.received] == [
        ("upgraded", "c1", {"tier": "silver", "from": "bronze"}), ("hello", "c1", {})]


def test_a_failing_webhook_is_retried_then_dead_lettered_in_one_slot(tmp_path: Path, cluster: Cluster) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        names = trigger_keys.names(True)
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 61 * 60
        assert await runner.tick() == (1, 1)  # posted: 503, retried after the backoff
        clock.now += 3600
        assert await runner.tick() == (0, 1)  # 503 again: the last attempt, dead-lettered
        clock.now += 3600
        assert await runner.tick() == (0, 0)
        assert await engine.redis.llen(names.dead) == 1
        assert await engine.redis.hgetall(names.stats("cart-reminder")) == {
            b"sent:deliveries": b"1", b"webhook:retried": b"1", b"webhook:dead_letter": b"1"}

    (tmp_path / "rules.yaml").write_text(RULES)
    with Receiver(SECRET, fail_first=10) as receiver:
        run_with_rules(tmp_path, cluster, receiver, clock, body, trigger_webhook_attempts=2,
                       trigger_webhook_backoff_s=10.0)
    assert receiver.requests == 2 and receiver.received == []
