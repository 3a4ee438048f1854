"""engine.profiles.segments: each segment at its documented threshold, counting what the cookie and
the customer hold together."""

from __future__ import annotations

import pytest

from engine.profiles import CustomerProfile, VisitorProfile
from engine.profiles.segments import AT_RISK_DAYS, CART_ABANDON_S, DAY, HIGH_VALUE_REVENUE, LOYAL_ORDERS, segments

NOW = 1_790_000_000.0


@pytest.mark.parametrize("visits, expected", [(0, "new"), (1, "new"), (2, "returning")])
def test_new_until_the_second_visit(visits: int, expected: str) -> None:
    assert segments(VisitorProfile(visits=visits), None, NOW) == [expected]


@pytest.mark.parametrize("cookie, customer, loyal", [
    (LOYAL_ORDERS - 1, 0, False),
    (LOYAL_ORDERS, 0, True),
    (0, LOYAL_ORDERS, True),
    (1, LOYAL_ORDERS - 1, True),  # orders before login count with the customer's
])
def test_loyal_from_the_threshold_of_orders(cookie: int, customer: int, loyal: bool) -> None:
    c = CustomerProfile(orders=customer, last_order=NOW - DAY) if customer else None
    assert ("loyal" in segments(VisitorProfile(visits=1, orders=cookie), c, NOW)) is loyal


@pytest.mark.parametrize("cookie, customer, high", [
    (HIGH_VALUE_REVENUE - 0.01, 0.0, False),
    (HIGH_VALUE_REVENUE, 0.0, True),
    (200.0, HIGH_VALUE_REVENUE - 200.0, True),
    (0.0, HIGH_VALUE_REVENUE - 0.01, False),
])
def test_high_value_from_the_threshold_of_revenue(cookie: float, customer: float, high: bool) -> None:
    c = CustomerProfile(revenue=customer)
    assert ("high_value" in segments(VisitorProfile(visits=1, revenue=cookie), c, NOW)) is high


@pytest.mark.parametrize("cart, idle_s, abandoner", [
    ({"a": 1}, CART_ABANDON_S, False),  # "more than an hour": exactly one is not yet
    ({"a": 1}, CART_ABANDON_S + 1, True),
    ({}, 30 * DAY, False),  # an emptied cart is not abandoned, however long ago
])
def test_cart_abandoner_after_the_idle_time(cart: dict[str, int], idle_s: float, abandoner: bool) -> None:
    v = VisitorProfile(visits=1, cart=cart, cart_updated=NOW - idle_s)
    assert ("cart_abandoner" in segments(v, None, NOW)) is abandoner


@pytest.mark.parametrize("days, at_risk", [(AT_RISK_DAYS, False), (AT_RISK_DAYS + 0.01, True)])
def test_at_risk_after_the_days_without_an_order(days: float, at_risk: bool) -> None:
    c = CustomerProfile(orders=1, last_order=NOW - days * DAY)
    assert ("at_risk" in segments(VisitorProfile(visits=2), c, NOW)) is at_risk


def test_at_risk_needs_a_known_last_order() -> None:
    # Orders of an anonymous cookie carry no order date: it is never "at risk".
    assert "at_risk" not in segments(VisitorProfile(visits=2, orders=5, last_seen=NOW - 400 * DAY), None, NOW)
    assert "at_risk" not in segments(VisitorProfile(visits=2), CustomerProfile(orders=0), NOW)


def test_all_segments_at_once_in_a_stable_order() -> None:
    v = VisitorProfile(visits=4, cart={"a": 2}, cart_updated=NOW - 2 * CART_ABANDON_S)
    c = CustomerProfile(orders=LOYAL_ORDERS, revenue=HIGH_VALUE_REVENUE, last_order=NOW - 200 * DAY)
    assert segments(v, c, NOW) == ["returning", "loyal", "high_value", "cart_abandoner", "at_risk"]
