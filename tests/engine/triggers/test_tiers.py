"""The value_tier kind on a real Redis: events applied by the engine record each customer's tier,
a change the trigger names arms one occurrence, the runner decides and posts it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.customers.scores import History, score
from engine.runtime import Engine
from engine.store import keys as store_keys
from models.customer_value import ShopModel, save
from tests.engine.triggers.receiver import Receiver
from tests.engine.triggers.test_delivery import SECRET, Clock, event, opt_in, run, stats

TRAIT_RULES = """
triggers:
  upgraded:
    kind: value_tier
    tiers: [bronze, silver, gold]
    direction: up
    channel: email
    control: 0
    payload: {title: "Welcome to {tier|}"}
"""
MODEL = ShopModel(horizon_days=90, typical_gap_days=38.0, buy_w=(-0.406, -0.428, 1.256, 0.408, -0.003), buy_b=-2.545,
                  spend_w=(0.0, -0.030, 0.595, 0.759, -0.092), spend_b=2.171,
                  orders_w=(0.0, -0.071, 0.576, 0.093, -0.141), orders_b=0.395,
                  means=(0.3, 0.4, 0.8, 5.5, 4.6))


def login(visitor: str, customer: str, ts: float, tier: str) -> Any:
    return event("login", visitor, ts, customer_id=customer, properties={"tier": tier})


def test_a_tier_trait_change_up_fires_once_and_a_fall_does_not(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), login("v1", "c1", t0 + 1, "bronze"),  # first seen: recorded
                                    opt_in("v2", t0), login("v2", "c2", t0 + 1, "gold")])
        assert await runner.tick() == (0, 0)
        await engine.applier.apply([login("v1", "c1", t0 + 2, "silver"), login("v1", "c1", t0 + 3, "silver"),
                                    login("v2", "c2", t0 + 2, "silver")])  # c2 falls: not up
        clock.now = t0 + 10
        assert await runner.tick() == (1, 1)
        assert await runner.tick() == (0, 0)
        tiers = await engine.redis.hgetall(store_keys.trigger_tiers("c1"))
        assert tiers == {b"upgraded": b"silver"}

    with Receiver(SECRET) as receiver:
        path = tmp_path / "rules.yaml"
        path.write_text(TRAIT_RULES)
        run(tmp_path, redis_url, path, body, receiver, clock)
    assert [(d["customer_id"], d["kind"], d["context"]) for d in receiver.received] == [
        ("c1", "value_tier", {"tier": "silver", "from": "bronze"})]
    assert receiver.received[0]["payload"]["title"] == "Welcome to silver"
    assert stats(redis_url, "upgraded") == {"sent:deliveries": 1, "webhook:delivered": 1}


def test_expected_revenue_bands_are_read_after_each_purchase(tmp_path: Path, redis_url: str) -> None:
    t0 = time.time()
    clock = Clock(t0)
    first = score(MODEL, History(t0 + 1, t0 + 1, 1, 20.0), t0 + 1)
    second = score(MODEL, History(t0 + 1, t0 + 2, 2, 520.0), t0 + 2)
    assert first is not None and second is not None and second.expected_revenue > first.expected_revenue
    gold = (first.expected_revenue + second.expected_revenue) / 2  # between the two
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
triggers:
  gold:
    kind: value_tier
    bands: {{regular: 0, gold: {gold:.4f}}}
    to: [gold]
    channel: email
    control: 0
""")
    save(tmp_path / "models", MODEL, {})

    async def body(engine: Engine, runner: Any) -> None:
        await engine.applier.apply([opt_in("v1", t0), event("purchase", "v1", t0 + 1, customer_id="c1",
                                                            item_id="i1", price=20.0)])
        assert await runner.tick() == (0, 0)  # a first tier is not a change
        await engine.applier.apply([event("purchase", "v1", t0 + 2, customer_id="c1", item_id="i2", price=500.0)])
        clock.now = t0 + 10
        assert await runner.tick() == (1, 1)

    with Receiver(SECRET) as receiver:
        run(tmp_path, redis_url, rules, body, receiver, clock)
    assert [(d["customer_id"], d["context"]) for d in receiver.received] == [
        ("c1", {"tier": "gold", "from": "regular"})]


def test_erasure_deletes_the_recorded_tiers() -> None:
    from engine.customers.people import Person, redis_keys

    assert store_keys.trigger_tiers("c1") in redis_keys(Person(["v1"], ["c1"]), 3600, time.time())
