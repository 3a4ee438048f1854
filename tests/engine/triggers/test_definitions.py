"""Trigger definitions: validated with the line and field of each mistake; pure policies."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.merch.loader import RulesInvalid, load_rules
from engine.triggers import suppress
from engine.merch.schema import QuietHours
from engine.triggers.webhook import backoff, signature, verify

GOOD = """\
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 45m
    channel: email
    audience: {segments_none: [loyal]}
    payload:
      title: "Still thinking{ first_name|}?"
      recommendations: {placement: cart, n: 3}
    quiet_hours: {start: "21:00", end: "08:00"}
    cap: {max: 1, window: 1d}
    control: 20%
  lapsing:
    kind: churn_risk
    band: high
    channel: push
  hello:
    kind: welcome
    channel: email
pressure:
  per_channel: {max: 2, window: 1d}
  all_channels: {max: 3, window: 7d}
"""


def errors_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(RulesInvalid) as info:
        load_rules(text, "rules.yaml")
    return [(e.line, e.field, e.message) for e in info.value.errors]


def test_a_complete_definition_loads() -> None:
    rules = load_rules(GOOD, "rules.yaml")
    cart = rules.triggers["cart-reminder"]
    assert cart.after_s == 2700 and cart.control == 0.2 and cart.payload.recommendations.n == 3
    assert rules.triggers["lapsing"].band == "high" and rules.triggers["hello"].after_s == 300
    assert rules.pressure.all_channels.max == 3


def test_mistakes_are_refused_with_their_line_and_field() -> None:
    text = """\
triggers:
  browse:
    kind: browse_abandoned
    min_views: 0
    channel: push
  cart:
    kind: cart_abandoned
    channel: sms
    after: soon
  quiet:
    kind: cart_abandoned
    channel: email
    quiet_hours: {start: "25:00", end: "08:00"}
    payload:
      title: "Hi {name}"
      recommendations: {placement: nowhere}
  who:
    kind: welcome
    channel: email
    audience: {segments_any: [vip]}
    min_views: 3
  what:
    kind: birthday
    channel: email
"""
    errors = errors_of(text)
    assert (4, "triggers.browse.min_views", "Input should be greater than or equal to 1 (got 0)") in errors
    assert any(line == 8 and field == "triggers.cart.channel" for line, field, _ in errors)
    assert any(line == 9 and field == "triggers.cart.after" and "duration" in m for line, field, m in errors)
    assert any(line == 13 and field == "triggers.quiet.quiet_hours.start" for line, field, _ in errors)
    assert (21, "triggers.who.min_views", "unknown field") in errors
    assert any(line == 22 and field == "triggers.what" and "cart_abandoned" in m for line, field, m in errors)


def test_catalogue_kinds_load_and_their_mistakes_have_a_line() -> None:
    rules = load_rules("triggers:\n  drop:\n    kind: price_drop\n    min_drop: 10%\n    channel: email\n"
                       "  back:\n    kind: back_in_stock\n    channel: push\n", "rules.yaml")
    assert rules.triggers["drop"].min_drop == 0.1 and rules.triggers["back"].channel == "push"
    errors = errors_of("""\
triggers:
  drop:
    kind: price_drop
    min_drop: 0
    channel: email
  steep:
    kind: price_drop
    min_drop: 150%
    channel: email
  back:
    kind: back_in_stock
    channel: email
    min_drop: 5%
""")
    assert any(line == 4 and field == "triggers.drop.min_drop" and "more than 0%" in m for line, field, m in errors)
    assert any(line == 8 and field == "triggers.steep.min_drop" for line, field, _ in errors)
    assert (13, "triggers.back.min_drop", "unknown field") in errors


def test_value_tier_and_new_item_load_and_their_mistakes_have_a_line() -> None:
    rules = load_rules("""\
triggers:
  vip:
    kind: value_tier
    bands: {regular: 0, silver: 200, gold: 1000}
    direction: up
    to: [gold]
    channel: email
  demoted:
    kind: value_tier
    tiers: [bronze, silver, gold]
    from: [gold]
    channel: push
  fresh:
    kind: new_item
    channel: email
""", "rules.yaml")
    vip, demoted = rules.triggers["vip"], rules.triggers["demoted"]
    assert vip.ranked() == ["regular", "silver", "gold"] and vip.to == ["gold"] and vip.direction == "up"
    assert demoted.from_ == ["gold"] and rules.triggers["fresh"].kind == "new_item"
    errors = errors_of("""\
triggers:
  neither:
    kind: value_tier
    channel: email
  both:
    kind: value_tier
    bands: {a: 0, b: 10}
    tiers: [a, b]
    channel: email
  unknown:
    kind: value_tier
    tiers: [bronze, gold]
    to: [platinum]
    channel: email
  negative:
    kind: value_tier
    bands: {a: 0, b: -5}
    channel: email
  sideways:
    kind: value_tier
    tiers: [a, b]
    direction: sideways
    channel: email
  fresh:
    kind: new_item
    channel: email
    min_drop: 5%
""")
    assert any(line == 2 and field == "triggers.neither" and "bands" in m for line, field, m in errors)
    assert any(line == 5 and field == "triggers.both" and "one of them" in m for line, field, m in errors)
    assert any(line == 10 and field == "triggers.unknown" and "platinum" in m for line, field, m in errors)
    assert any(line == 17 and field == "triggers.negative.bands.b" for line, field, _ in errors)
    assert any(line == 22 and field == "triggers.sideways.direction" for line, field, _ in errors)
    assert (27, "triggers.fresh.min_drop", "unknown field") in errors


def test_value_tier_fires_from_the_tiers_its_parameters_name() -> None:
    from engine.triggers.kinds.tier import NONE, fires_from

    rules = load_rules("""\
triggers:
  up:
    kind: value_tier
    tiers: [bronze, silver, gold]
    direction: up
    channel: email
  gold:
    kind: value_tier
    tiers: [bronze, silver, gold]
    from: [gold]
    channel: email
""", "rules.yaml")
    up, gold = rules.triggers["up"], rules.triggers["gold"]
    assert fires_from(up, "silver") == (NONE, "bronze") and fires_from(up, "bronze") == (NONE,)
    assert fires_from(up, NONE) == ()
    assert fires_from(gold, "silver") == ("gold",) and fires_from(gold, "gold") == ()


def test_references_are_checked_with_their_line() -> None:
    text = """\
triggers:
  quiet:
    kind: cart_abandoned
    channel: email
    payload:
      title: "Hi {name}"
      recommendations: {placement: nowhere}
    audience: {segments_any: [vip]}
"""
    errors = errors_of(text)
    assert [(line, field) for line, field, _ in errors] == [
        (6, "triggers.quiet.payload.title"), (7, "triggers.quiet.payload.recommendations.placement"),
        (8, "triggers.quiet.audience.segments_any[0]")]


def test_quiet_hours_span_midnight_in_the_shop_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    quiet = QuietHours(start="21:00", end="08:00")
    at = datetime(2026, 12, 4, 22, 30, tzinfo=paris).timestamp()
    assert suppress.quiet_until(quiet, at, paris) == datetime(2026, 12, 5, 8, 0, tzinfo=paris).timestamp()
    early = datetime(2026, 12, 5, 7, 0, tzinfo=paris).timestamp()
    assert suppress.quiet_until(quiet, early, paris) == datetime(2026, 12, 5, 8, 0, tzinfo=paris).timestamp()
    assert suppress.quiet_until(quiet, datetime(2026, 12, 5, 12, 0, tzinfo=paris).timestamp(), paris) is None


def test_the_personal_limit_lowers_the_pressure_cap() -> None:
    rules = load_rules(GOOD, "rules.yaml")
    hello = rules.triggers["hello"]
    shop = [suppress.Limit(2, 86400, channel="email"), suppress.Limit(3, 7 * 86400)]
    assert suppress.limits("hello", hello, rules.pressure, {}) == shop
    assert suppress.limits("hello", hello, rules.pressure, {"max_messages_per_week": "1"}) == \
        shop + [suppress.Limit(1, suppress.WEEK_S)]
    assert suppress.limits("hello", hello, rules.pressure, {"max_messages_per_week": "lots"}) == shop


def test_signatures_verify_and_backoff_grows_with_jitter() -> None:
    header = signature("s" * 16, 1000, b"{}")
    assert verify("s" * 16, header, b"{}", 1000) and not verify("s" * 16, header, b"{ }", 1000)
    assert not verify("s" * 16, header, b"{}", 2000) and not verify("t" * 16, header, b"{}", 1000)
    waits = [backoff(n, 5.0, 3600.0) for n in (1, 2, 3, 20)]
    assert 2.5 <= waits[0] < 7.5 and 5 <= waits[1] < 15 and 10 <= waits[2] < 30 and waits[3] < 5400
