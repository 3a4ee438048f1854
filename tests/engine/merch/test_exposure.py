"""The exposure state (pure): what impressions, clicks and purchases do to it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.events.schema import Event
from engine.merch.exposure import MAX_BLOCKS, MAX_EXPERIMENTS, Exposure, fold, item_hash, minute, parse_recommendation_id

T0 = datetime(2026, 12, 10, 12, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
PRICES = {"m1": 5.0, "m2": 7.5}


def event(kind: str, ts: float, **fields: Any) -> Event:
    props = fields.pop("properties", {})
    return Event(event_id=f"e{ts}{kind}", type=kind, visitor_id="v1", ts=ts, rt=ts, properties=props,
                 **fields)  # type: ignore[arg-type]


def apply(x: Exposure, e: Event, known: tuple[str, ...] = ("e1.b", "home-test.b")) -> list[tuple[str, str, float]]:
    return fold(x, e, PRICES.get, retention_s=30 * 86400, attribution_s=86400,
                known=lambda experiment, arm: f"{experiment}.{arm}" in known)


def impression(ts: float, block: str = "b1", items: tuple[str, ...] = (), rid: str | None = None) -> Event:
    props: dict[str, Any] = {"block_id": block}
    if rid:
        props["recommendation_id"] = rid
    return event("block_impression", ts, properties=props,
                 items=tuple({"item_id": i} for i in items) or None)


def test_block_impressions_count_in_sliding_windows() -> None:
    x = Exposure()
    for h in (0, 1, 30):
        apply(x, impression(T0 + h * HOUR))
    now = T0 + 30 * HOUR
    assert x.block_impressions(["b1"], minute(now - 24 * HOUR)) == 1
    assert x.block_impressions(["b1"], minute(now - 48 * HOUR)) == 3
    assert x.block_impressions(["b1", "other"], minute(now - 48 * HOUR)) == 3


def test_recommendation_strips_count_items_not_blocks() -> None:
    x = Exposure()
    apply(x, impression(T0, block="reco:home", items=("m1", "m2")))
    apply(x, impression(T0 + 60, block="reco:home", items=("m1",)))
    assert x.blocks == {}
    shown = x.items_shown(minute(T0))
    assert shown[item_hash("m1")] == 2 and shown[item_hash("m2")] == 1
    assert x.items_shown(minute(T0) + 1)[item_hash("m2")] == 0


def test_old_impressions_are_dropped_and_lists_are_bounded() -> None:
    x = Exposure()
    apply(x, impression(T0, block="old", items=("m1",)))
    for i in range(30):
        apply(x, impression(T0 + 31 * 86400 + i, block=f"b{i % (MAX_BLOCKS + 2)}"))
    assert "old" not in x.blocks and x.items == []
    assert len(x.blocks) == MAX_BLOCKS
    for _ in range(25):
        apply(x, impression(T0 + 32 * 86400, block="busy"))
    assert len(x.blocks["busy"]) == 20  # caps are at most 20, so 20 are enough to decide exactly


def test_experiment_counters_exposure_click_and_attributed_purchase() -> None:
    x = Exposure()
    rid = "abcd.e1.b"
    assert parse_recommendation_id(rid) == ("e1", "b") and parse_recommendation_id("abcd") is None
    assert apply(x, impression(T0, block="reco:home", items=("m1",), rid=rid)) == [
        ("xp:e1", "b:visitors", 1.0), ("xp:e1", "b:impressions", 1.0)]
    assert apply(x, impression(T0 + 1, block="reco:home", items=("m1",), rid=rid)) == [
        ("xp:e1", "b:impressions", 1.0)]  # a visitor counts once
    assert apply(x, event("recommendation_click", T0 + 2, item_id="m1",
                          properties={"recommendation_id": rid})) == [("xp:e1", "b:clicks", 1.0)]
    bought = event("purchase", T0 + 3, items=({"item_id": "m1", "quantity": 2},
                                              {"item_id": "zz", "quantity": 1, "price": 100.0}))
    assert apply(x, bought) == [("xp:e1", "b:revenue", 10.0), ("xp:e1", "b:revenue_sq", 100.0),
                                ("xp:e1", "b:conversions", 1.0)]
    again = event("purchase", T0 + 4, item_id="m1", price=4.0)
    assert apply(x, again) == [("xp:e1", "b:revenue", 4.0), ("xp:e1", "b:revenue_sq", 14.0 ** 2 - 10.0 ** 2)]
    late = event("purchase", T0 + 2 * 86400, item_id="m1", price=4.0)
    assert apply(x, late) == []  # outside the attribution window


def test_encode_decode_round_trip_and_size() -> None:
    x = Exposure()
    apply(x, impression(T0, block="welcome-back"))
    for page in range(3):
        apply(x, impression(T0 + page * 60, block="reco:home", items=tuple(f"item{page}-{i}" for i in range(10)),
                            rid="0123456789abcdef.home-test.b"))
    raw = x.encode()
    assert Exposure.decode(raw) == x
    assert Exposure.decode(None) == Exposure() == Exposure.decode(b"")
    # one block shown, 30 items shown on three pages, one experiment: 3 bytes an item, 4 a page
    assert len(raw) < 180, len(raw)
    many = Exposure(items=[(i, 100 + i // 300) for i in range(700)])
    assert Exposure.decode(many.encode()) == many  # runs longer than 255 split cleanly


def test_arms_the_rules_cannot_assign_count_nothing_and_leave_no_state() -> None:
    x = Exposure()
    forged = [impression(T0 + i, block="reco:home", items=("m1",), rid=f"abcd.fake-{i}.b") for i in range(50)]
    assert all(apply(x, e) == [] for e in forged)
    assert apply(x, event("recommendation_click", T0 + 60, item_id="m1",
                          properties={"recommendation_id": "abcd.e1.nope"})) == []
    assert x.experiments == {} and x.clicks == {}
    assert len(x.items) == 50  # what was shown still feeds anti-repetition
    bought = event("purchase", T0 + 120, item_id="m1", price=3.0)
    assert apply(x, bought) == []  # nothing to attribute to


def test_a_purchase_after_its_experiment_left_the_rules_counts_nothing() -> None:
    x = Exposure()
    rid = "abcd.e1.b"
    apply(x, impression(T0, block="reco:home", items=("m1",), rid=rid))
    apply(x, event("recommendation_click", T0 + 1, item_id="m1", properties={"recommendation_id": rid}))
    bought = event("purchase", T0 + 2, item_id="m1", price=3.0)
    assert apply(x, bought, known=()) == []  # e1 was removed from the rules file meanwhile


def test_a_visitors_experiment_state_is_bounded() -> None:
    x = Exposure()
    names = tuple(f"exp{i}.b" for i in range(MAX_EXPERIMENTS + 5))
    for i, name in enumerate(names):
        apply(x, impression(T0 + i, block="reco:home", rid=f"abcd.{name}"), known=names)
    assert len(x.experiments) == MAX_EXPERIMENTS and "exp0" not in x.experiments
    assert f"exp{MAX_EXPERIMENTS + 4}" in x.experiments
