"""Triggers end to end on a real Redis and a real webhook receiver: events applied by the engine
arm occurrences, the runner (with a clock the test moves) decides and posts them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.events.schema import Event
from engine.profiles.preferences import Watcher
from engine.runtime import Engine
from engine.triggers import keys
from engine.triggers.report import trigger_report
from tests.conftest import make_settings
from tests.engine.triggers.receiver import Receiver
from tests.redis_clients import is_cluster_url, sync_client

SECRET = "whsec-test-0123456789abcdef"
_ids = itertools.count()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(kind: str, visitor: str, ts: float, **fields: Any) -> Event:
    return Event(event_id=f"e{next(_ids)}", type=kind, visitor_id=visitor, ts=ts, rt=ts, **fields)


def opt_in(visitor: str, ts: float, channel: str = "email") -> Event:
    return event("consent", visitor, ts, properties={"purpose": channel, "granted": True})


RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload:
      title: "Your cart{ first_name|}"
      body: "{cart_items} items are waiting"
{extra}
"""


def rules_file(tmp_path: Path, extra: str = "", **replace: str) -> Path:
    text = RULES.replace("{extra}", extra)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def run(tmp_path: Path, redis_url: str, rules: Path, body: Callable[[Engine, Any], Awaitable[None]],
        receiver: Receiver | None, clock: Clock, **overrides: object) -> None:
    settings = make_settings(tmp_path, redis_url, rules_file=rules, trigger_webhook_url=receiver.url if receiver else None,
                             trigger_webhook_secret=SECRET if receiver else None,
                             **{"trigger_webhook_backoff_s": 10.0, **overrides})

    async def main() -> None:
        engine = Engine(settings, redis_url, serve_models=False)
        await engine.start()
        runner = engine.trigger_runner(clock=clock)
        try:
            await body(engine, runner)
        finally:
            await runner.stop()
            await engine.stop()

    asyncio.run(main())


def stats(redis_url: str, trigger: str = "cart-reminder") -> dict[str, int]:
    client = sync_client(redis_url)
    try:
        counters = client.hgetall(keys.names(is_cluster_url(redis_url)).stats(trigger))
        return {k.decode(): int(v) for k, v in counters.items()}
    finally:
        client.close()


def test_cart_abandoned_fires_once_after_the_delay_signed(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1", quantity=2)])
        clock.now = t0 + 59 * 60
        assert await runner.tick() == (0, 0)
        clock.now = t0 + 61 * 60
        assert await runner.tick() == (1, 1)
        clock.now = t0 + 200 * 60
        assert await runner.tick() == (0, 0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert receiver.bad_signatures == 0
    assert len(receiver.received) == 1
    doc = receiver.received[0]
    assert doc["trigger"] == "cart-reminder" and doc["visitor_id"] == "v1" and doc["channel"] == "email"
    assert doc["payload"]["body"] == "2 items are waiting"
    assert receiver.keys == [doc["id"]]
    assert stats(redis_url) == {"sent:deliveries": 1, "webhook:delivered": 1}


def test_a_purchase_or_an_emptied_cart_cancels(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1"),
                                    event("purchase", "v1", t0 + 2, item_id="i1", price=10.0),
                                    opt_in("v2", t0), event("add_to_cart", "v2", t0 + 1, item_id="i1"),
                                    event("remove_from_cart", "v2", t0 + 2, item_id="i1")])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (0, 0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert receiver.requests == 0


def test_consent_is_checked_again_at_the_due_time(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1"),
                                    opt_in("v2", t0), event("add_to_cart", "v2", t0 + 1, item_id="i1"),
                                    event("add_to_cart", "v3", t0 + 1, item_id="i1")])  # v3: no opt-in
        # Between scheduling and delivery: v1 withdraws, v2 browses with Global Privacy Control.
        await engine.applier.apply([event("consent", "v1", t0 + 60, properties={"granted": False}),
                                    event("page_view", "v2", t0 + 60, gpc=True)])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (3, 0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert receiver.requests == 0
    assert stats(redis_url) == {"suppressed:no_consent": 3}


def test_caps_suppress_and_quiet_hours_defer(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)
    hour = datetime.fromtimestamp(t0 + 3600, timezone.utc).hour
    quiet = f'    quiet_hours: {{start: "{hour:02d}:00", end: "{(hour + 2) % 24:02d}:00"}}\n    cap: {{max: 1, window: 1d}}'
    end = datetime.fromtimestamp(t0 + 3600, timezone.utc).replace(minute=0, second=0, microsecond=0).timestamp() + 7200

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 3601
        assert await runner.tick() == (1, 0)  # in the quiet hours: moved to their end
        assert stats(redis_url) == {"deferred:quiet_hours": 1}
        clock.now = end - 1
        assert await runner.tick() == (0, 0)
        clock.now = end + 1
        assert await runner.tick() == (1, 1)
        # The cart changes again after the message: a second occurrence, over the trigger's cap.
        await engine.applier.apply([event("add_to_cart", "v1", t0 + 2, item_id="i2")])
        clock.now = end + 2 * 3600
        assert await runner.tick() == (1, 0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path, quiet), body, receiver, clock)
    assert len(receiver.received) == 1
    assert stats(redis_url) == {"deferred:quiet_hours": 1, "sent:deliveries": 1, "webhook:delivered": 1,
                                "suppressed:capped": 1}


def test_pressure_caps_messages_across_triggers(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)
    extra = """  browse:
    kind: browse_abandoned
    after: 30m
    min_views: 1
    channel: email
    control: 0
  hello:
    kind: welcome
    channel: email
    control: 0
pressure:
  all_channels: {max: 1, window: 7d}"""

    async def body(engine: Engine, runner: Any) -> None:
        # c1: welcomed (due first), then browse-abandoned over the pressure cap. v2: cart cancels browse.
        await engine.applier.apply([opt_in("v1", t0), event("login", "v1", t0, customer_id="c1"),
                                    event("product_view", "v1", t0 + 1, item_id="i1", customer_id="c1"),
                                    opt_in("v2", t0), event("product_view", "v2", t0 + 1, item_id="i1"),
                                    event("add_to_cart", "v2", t0 + 2, item_id="i1")])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (3, 2)

    _load_items(redis_url, [{"item_id": "i1", "category": "home.mugs", "title": "Mug"}])
    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path, extra), body, receiver, clock)
    assert sorted((d["trigger"], d["visitor_id"], d["customer_id"]) for d in receiver.received) == [
        ("cart-reminder", "v2", None), ("hello", "v1", "c1")]
    assert stats(redis_url, "browse") == {"suppressed:capped": 1}


def test_a_personal_limit_set_at_login_caps_below_the_shop_pressure(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("login", "v1", t0, customer_id="c1",
                                                            properties={"max_messages_per_week": 0}),
                                    event("add_to_cart", "v1", t0 + 1, item_id="i1", customer_id="c1")])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (1, 0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert receiver.requests == 0
    assert stats(redis_url) == {"suppressed:capped": 1}


def _load_items(redis_url: str, items: list[dict[str, Any]]) -> None:
    from engine.catalog import Item, upsert_items

    async def load() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await upsert_items(client, [Item(**i) for i in items])
        await client.aclose()

    asyncio.run(load())


def test_control_group_gets_nothing_and_is_counted(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (1, 0)
        # A return visit within the attribution window converts the held-out person.
        await engine.applier.apply([event("page_view", "v1", clock.now + 7200)])
        report = await trigger_report(engine.redis, "cart-reminder", engine.rules.current.rules.triggers["cart-reminder"])
        assert report["arms"]["control"]["people"] == 1
        assert report["arms"]["control"]["conversions"] == 1
        assert report["arms"]["sent"]["people"] == 0
        assert report["suppressed"] == {"control_group": 1}
        held = await engine.redis.xrange(keys.HELD_OUT)
        assert len(held) == 1

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path, **{"control: 0": "control: 100%"}), body, receiver, clock)
    assert receiver.requests == 0


def test_a_visitor_reached_anonymously_converts_after_logging_in(tmp_path: Path, redis_url: str) -> None:
    """The reminder went to a cookie; the purchase names the customer the cookie logged in as: it
    converts the cookie's touch, once."""
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (1, 1)
        await engine.applier.apply([event("login", "v1", clock.now + 60, customer_id="c1"),
                                    event("purchase", "v1", clock.now + 120, customer_id="c1", item_id="i1",
                                          price=4.0, quantity=1)])
        report = await trigger_report(engine.redis, "cart-reminder", engine.rules.current.rules.triggers["cart-reminder"])
        sent = report["arms"]["sent"]
        assert (sent["people"], sent["conversions"], sent["revenue"]) == (1, 1, 4.0)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)


def test_a_restart_between_scheduling_and_due_time_delivers_exactly_once(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)
    rules = rules_file(tmp_path)

    async def schedule(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])

    async def deliver(engine: Engine, runner: Any) -> None:
        clock.now = t0 + 2 * 3600
        # Two processes polling at once: the claim gives the occurrence to one of them.
        other = engine.trigger_runner(clock=clock)
        try:
            await asyncio.gather(runner.tick(), other.tick())
        finally:
            await other.stop()

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules, schedule, receiver, clock)
        run(tmp_path, redis_url, rules, deliver, receiver, clock)
        run(tmp_path, redis_url, rules, deliver, receiver, clock)
    assert len(receiver.received) == 1


def test_webhook_retries_with_backoff_then_dead_letters(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1"),
                                    opt_in("v2", t0), event("add_to_cart", "v2", t0 + 1, item_id="i1")])
        clock.now = t0 + 2 * 3600
        for _ in range(6):
            await runner.tick()
            clock.now += 3600  # past any backoff

    with Receiver(SECRET, fail_first=3) as receiver:  # 2 documents: one retried once, one twice
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert len(receiver.received) == 2 and len(set(receiver.keys)) == 2
    assert stats(redis_url)["webhook:retried"] == 3

    with Receiver(SECRET, fail_first=10**6) as failing:
        client = redis.Redis.from_url(redis_url)
        client.flushall()
        client.close()
        run(tmp_path, redis_url, rules_file(tmp_path), body, failing, clock, trigger_webhook_attempts=3)
    assert failing.requests == 6 and failing.bad_signatures == 0
    counts = stats(redis_url)
    assert counts["webhook:dead_letter"] == 2 and counts["webhook:retried"] == 4
    client = redis.Redis.from_url(redis_url)
    assert client.llen(keys.DEAD) == 2
    client.close()


def test_old_events_replayed_do_not_schedule(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time() - 30 * 86400
    clock = Clock(time.time())

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        assert await runner.tick() == (0, 0)

    run(tmp_path, redis_url, rules_file(tmp_path), body, None, clock)


def test_a_catalogue_change_arms_the_watchers_of_a_kind_that_reacts(tmp_path: Path, redis_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry point a catalogue write calls, with a catalogue-driven kind as a module would be."""
    import types

    from engine.catalog import Item
    from engine.triggers import kinds

    drop = types.ModuleType("price_drop")
    drop.SCOPE, drop.EVENTS = "visitor", frozenset()  # type: ignore[attr-defined]
    drop.on_item_changed = (lambda trigger, old, new: {"price": new.price}  # type: ignore[attr-defined]
                            if old is not None and new.price < old.price else None)
    drop.reaches = lambda trigger, data, watcher: True  # type: ignore[attr-defined]
    drop.still_due = lambda trigger, person, data: True  # type: ignore[attr-defined]
    monkeypatch.setitem(kinds.KINDS, "cart_abandoned", drop)  # the defined trigger now reacts to prices
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), opt_in("v2", t0)])

        async def watchers(item_id: str) -> list[Watcher]:
            return [Watcher("v:v1", None, True), Watcher("v:v2", None, False)] if item_id == "i1" else []

        old, cheaper = Item(item_id="i1", price=20.0), Item(item_id="i1", price=15.0)
        assert await engine.trigger_hook.on_item_changed(cheaper, old, watchers) == 0  # a rise
        assert await engine.trigger_hook.on_item_changed(old, cheaper, watchers) == 2
        clock.now = t0 + 2 * 3600
        assert await runner.tick() == (2, 2)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path), body, receiver, clock)
    assert sorted((d["visitor_id"], d["context"]["item_id"], d["context"]["price"]) for d in receiver.received) == [
        ("v1", "i1", 15.0), ("v2", "i1", 15.0)]


def test_concurrent_deciders_cannot_exceed_a_cap(tmp_path: Path, redis_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Three occurrences of one person due at once, one decided by each of three runners, all three
    past reading the person before any of them decides: the pressure cap (one message) is checked
    and recorded in one step, so one goes out and two are capped."""
    from dataclasses import replace

    from engine.triggers import runner as runner_module

    t0 = time.time()
    clock = Clock(t0)
    extra = "".join(f"""  cart-{n}:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
""" for n in range(2)) + "pressure:\n  all_channels: {max: 1, window: 7d}"
    together = asyncio.Barrier(3)
    load = runner_module.load_profiles

    async def load_together(*args: Any) -> Any:
        loaded = await load(*args)
        await asyncio.wait_for(together.wait(), 10)
        return loaded

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
        clock.now = t0 + 2 * 3600
        runners = [runner, engine.trigger_runner(clock=clock), engine.trigger_runner(clock=clock)]
        for r in runners:
            r.config = replace(r.config, batch=1)  # one occurrence each
        monkeypatch.setattr(runner_module, "load_profiles", load_together)
        try:
            assert await asyncio.gather(*(r.run_due() for r in runners)) == [1, 1, 1]
            await runner.tick()
        finally:
            for r in runners[1:]:
                await r.stop()

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules_file(tmp_path, extra), body, receiver, clock)
    assert len(receiver.received) == 1
    counts = [stats(redis_url, t) for t in ("cart-reminder", "cart-0", "cart-1")]
    assert sum(c.get("suppressed:capped", 0) for c in counts) == 2
    assert sum(c.get("sent:deliveries", 0) for c in counts) == 1
