"""engine.merch.segments: the built-in segments as definitions (the same membership as the six
hard-coded rules they replace), each condition of the language, references between segments, and
how the rules file's ``segments:`` is validated (with the line) and overrides the built-in ones."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from engine.merch.loader import RulesInvalid, load_rules
from engine.merch.schema import Segment
from engine.merch.segments import CHECKS, DAY, DEFAULT_SET, MEMBERSHIP, SegmentSet, members
from engine.profiles import CustomerProfile, VisitorProfile

NOW = 1_790_000_000.0
LOYAL_ORDERS, HIGH_VALUE_REVENUE, CART_ABANDON_S, AT_RISK_DAYS = 3, 500.0, 3600, 90


def legacy(visitor: VisitorProfile, customer: CustomerProfile | None, now: float) -> list[str]:
    """The hard-coded rules the defaults replace, verbatim (engine/profiles/segments.py before)."""
    out: list[str] = []
    out.append("returning" if visitor.visits > 1 else "new")
    orders = (customer.orders if customer else 0) + visitor.orders
    revenue = (customer.revenue if customer else 0.0) + visitor.revenue
    if orders >= LOYAL_ORDERS:
        out.append("loyal")
    if revenue >= HIGH_VALUE_REVENUE:
        out.append("high_value")
    if visitor.cart and now - visitor.cart_updated > CART_ABANDON_S:
        out.append("cart_abandoner")
    last_order = customer.last_order if customer else 0.0
    if orders and last_order and now - last_order > AT_RISK_DAYS * DAY:
        out.append("at_risk")
    return out


def segments(v: VisitorProfile, c: CustomerProfile | None, now: float = NOW) -> list[str]:
    return members(DEFAULT_SET, v, c, now)


def test_the_defaults_give_the_old_membership_on_every_crafted_profile() -> None:
    cases = 0
    for visits, v_orders, c_orders, revenue, cart_idle, since_order, has_customer in itertools.product(
            (0, 1, 2, 7), (0, 1, 3), (0, 2, 3), (0.0, 499.99, 500.0, 900.0),
            (None, 0, CART_ABANDON_S, CART_ABANDON_S + 1, 30 * DAY),
            (0.0, AT_RISK_DAYS * DAY, AT_RISK_DAYS * DAY + 1, 400 * DAY), (False, True)):
        v = VisitorProfile(visits=visits, orders=v_orders, revenue=revenue / 2,
                           cart={"a": 1} if cart_idle is not None else {},
                           cart_updated=NOW - (cart_idle or 0))
        c = CustomerProfile(orders=c_orders, revenue=revenue / 2,
                            last_order=NOW - since_order if since_order else 0.0) if has_customer else None
        assert segments(v, c) == legacy(v, c, NOW), (v, c)
        cases += 1
    assert cases == 4 * 3 * 3 * 4 * 5 * 4 * 2


@pytest.mark.parametrize("cart, idle_s, abandoner", [
    ({"a": 1}, CART_ABANDON_S, False),  # "more than an hour": exactly one is not yet
    ({"a": 1}, CART_ABANDON_S + 1, True),
    ({}, 30 * DAY, False),  # an emptied cart is not abandoned, however long ago
])
def test_cart_abandoner_after_the_idle_time(cart: dict[str, int], idle_s: float, abandoner: bool) -> None:
    v = VisitorProfile(visits=1, cart=cart, cart_updated=NOW - idle_s)
    assert ("cart_abandoner" in segments(v, None)) is abandoner


@pytest.mark.parametrize("days, at_risk", [(AT_RISK_DAYS, False), (AT_RISK_DAYS + 0.01, True)])
def test_at_risk_after_the_days_without_an_order(days: float, at_risk: bool) -> None:
    c = CustomerProfile(orders=1, last_order=NOW - days * DAY)
    assert ("at_risk" in segments(VisitorProfile(visits=2), c)) is at_risk


def test_at_risk_needs_a_known_last_order() -> None:
    assert "at_risk" not in segments(VisitorProfile(visits=2, orders=5, last_seen=NOW - 400 * DAY), None)


def test_all_segments_at_once_in_a_stable_order() -> None:
    v = VisitorProfile(visits=4, cart={"a": 2}, cart_updated=NOW - 2 * CART_ABANDON_S)
    c = CustomerProfile(orders=LOYAL_ORDERS, revenue=HIGH_VALUE_REVENUE, last_order=NOW - 200 * DAY)
    assert segments(v, c) == ["returning", "loyal", "high_value", "cart_abandoner", "at_risk"]


def test_every_condition_of_the_language_has_its_check() -> None:
    conditions = set(Segment.model_fields) - {"description", *MEMBERSHIP}
    assert conditions == set(CHECKS)


@dataclass(frozen=True)
class FakeScores:
    churn_risk: str
    expected_revenue: float


def one(rule: dict[str, object], v: VisitorProfile, c: CustomerProfile | None = None, scorer=None) -> bool:
    return "s" in members(SegmentSet.of({"s": Segment.model_validate(rule)}), v, c, NOW, scorer)


def test_each_condition_over_the_profile() -> None:
    v = VisitorProfile(visits=3, last_seen=NOW - 2 * DAY, category_affinity={"kitchen.mugs": 4.0, "garden": 1.0},
                       brand_affinity={"acme": 2.0, "lumo": 1.0}, consent=True, channels={"email": True})
    assert one({"days_since_last_visit": {"min": 1, "max": 3}}, v)
    assert not one({"days_since_last_visit": {"below": 2}}, v)
    assert one({"category_affinity": {"Kitchen": 0.9}}, v)  # a parent category covers its children
    assert not one({"category_affinity": {"garden": 0.5}}, v)
    assert one({"brand_affinity": {"lumo": 0.5}}, v) and not one({"brand_affinity": {"lumo": 0.6}}, v)
    assert one({"consent": True}, v) and not one({"consent": True}, VisitorProfile(consent=False))
    assert one({"email_opt_in": True}, v) and one({"push_opt_in": False}, v)
    assert one({"logged_in": False}, v) and one({"logged_in": True}, v, CustomerProfile())
    assert one({"customer_tier": ["gold"]}, v, CustomerProfile(traits={"tier": "gold"}))
    assert not one({"customer_tier": ["gold"]}, v)
    assert one({"cart": "empty"}, v) and not one({"cart_age_hours": {"min": 0}}, v)


def test_declared_preferences_as_conditions() -> None:
    fans = SegmentSet.of({"garden_fans": Segment.model_validate({"prefers_category": ["Garden"]}),
                          "acme_fans": Segment.model_validate({"prefers_brand": ["acme"]})})
    assert fans.needs_declared and not DEFAULT_SET.needs_declared
    v = VisitorProfile()
    assert members(fans, v, None, NOW, declared=(["garden.tools"], ["acme"]))[-2:] == ["garden_fans", "acme_fans"]
    assert "garden_fans" not in members(fans, v, None, NOW, declared=(["gardening"], []))  # a path, not a prefix
    assert not {"garden_fans", "acme_fans"} & set(members(fans, v, None, NOW))  # nothing declared


def test_scores_are_computed_once_and_only_when_a_segment_asks() -> None:
    calls: list[float] = []

    def scorer(c: CustomerProfile, now: float) -> FakeScores:
        calls.append(now)
        return FakeScores("high", 120.0)

    c = CustomerProfile(orders=2)
    assert members(DEFAULT_SET, VisitorProfile(), c, NOW, scorer) and calls == []
    both = SegmentSet.of({"drifting": Segment.model_validate({"churn_risk": ["high", "medium"]}),
                          "valuable": Segment.model_validate({"expected_revenue": {"min": 100}})})
    assert {"drifting", "valuable"} <= set(members(both, VisitorProfile(), c, NOW, scorer)) and calls == [NOW]
    assert not one({"churn_risk": ["high"]}, VisitorProfile(), None, scorer)  # scores are about customers
    assert not one({"churn_risk": ["high"]}, VisitorProfile(), c, lambda c, now: None)  # no model trained


def test_segments_built_from_segments_and_a_redefined_default() -> None:
    defined = {
        "loyal": Segment.model_validate({"orders": {"min": 5}}),
        "lapsed_loyal": Segment.model_validate({"all_of": ["loyal", "at_risk"]}),
        "fresh": Segment.model_validate({"any_of": ["new", "cart_abandoner"], "none_of": ["loyal"]}),
    }
    s = SegmentSet.of(defined)
    assert list(s.rules)[:6] == list(DEFAULT_SET.rules) and s.sources["loyal"] == "rules"
    assert s.sources["new"] == "default" and s.sources["fresh"] == "rules"
    c = CustomerProfile(orders=5, last_order=NOW - 100 * DAY)
    assert members(s, VisitorProfile(visits=1), c, NOW) == ["new", "loyal", "at_risk", "lapsed_loyal"]
    c3 = CustomerProfile(orders=3, last_order=NOW - 100 * DAY)  # loyal by the default, not by the shop's
    assert members(s, VisitorProfile(visits=1), c3, NOW) == ["new", "at_risk", "fresh"]


RULES = """\
segments:
  vip:
    orders: {min: 5}
    revenue: {min: 1000}
  drifting_vip:
    all_of: [vip]
    churn_risk: [high]
"""


def errors(text: str) -> list[str]:
    with pytest.raises(RulesInvalid) as exc:
        load_rules(text, "rules.yaml")
    return [str(e) for e in exc.value.errors]


def test_a_valid_segments_section_loads() -> None:
    rules = load_rules(RULES, "rules.yaml")
    assert rules.segments["vip"].orders.min == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("text, expected", [
    (RULES + "    ordrs: {min: 1}\n", "rules.yaml:8: segments.drifting_vip.ordrs: unknown field"),
    (RULES.replace("{min: 5}", "{min: five}"), "rules.yaml:3: segments.vip.orders.min: Input should be a valid "
                                               "number (got 'five')"),
    (RULES.replace("[high]", "[hot]"), "rules.yaml:7: segments.drifting_vip.churn_risk[0]: Input should be "
                                       "'high', 'medium' or 'low' (got 'hot')"),
    (RULES.replace("{min: 5}", "{min: 5, above: 4}"), "rules.yaml:3: segments.vip.orders: give `min` or `above`, "
                                                      "not both"),
    (RULES.replace("{min: 5}", "{min: 5, max: 2}"), "rules.yaml:3: segments.vip.orders: no number is within these "
                                                    "bounds"),
    ("segments:\n  empty: {description: nobody}\n", "rules.yaml:2: segments.empty: give at least one condition"),
    (RULES.replace("all_of: [vip]", "all_of: [vip, whales]"), "rules.yaml:6: segments.drifting_vip.all_of[1]: "
                                                             "unknown segment 'whales'; known: at_risk, "
                                                             "cart_abandoner, drifting_vip, high_value, loyal, "
                                                             "new, returning, vip"),
    (RULES + "  whales:\n    any_of: [drifting_vip]\n", None),  # a reference to a later-built segment is fine
])
def test_invalid_definitions_name_the_line_and_field(text: str, expected: str | None) -> None:
    if expected is None:
        load_rules(text, "rules.yaml")
    else:
        assert errors(text) == [expected]


def test_a_loop_between_segments_is_an_error_at_the_reference_that_closes_it() -> None:
    text = RULES.replace("revenue: {min: 1000}", "none_of: [drifting_vip]")
    assert errors(text) == ["rules.yaml:4: segments.vip.none_of[0]: segments refer to each other in a loop: "
                            "vip -> drifting_vip -> vip"]
    assert errors("segments:\n  me:\n    any_of: [me]\n") == [
        "rules.yaml:3: segments.me.any_of[0]: segments refer to each other in a loop: me -> me"]


def test_every_rule_that_selects_people_checks_its_segment_names() -> None:
    text = RULES + """\
placements:
  home:
    boosts:
      - {affinity: category, factor: 2, segments_any: [vipp]}
frequency: {max: 3, window: 1d, segments_none: [nobody]}
experiments:
  e1:
    placement: home
    segments_any: [vip, ghosts]
    variants: [{name: a, weight: 1}]
blocks:
  - {id: b1, slot: home, when: {segments_any: [vip]}, cap: {max: 1, window: 1d, segments_any: [gone]}}
"""
    assert sorted(e.split("; known")[0] for e in errors(text)) == [
        "rules.yaml:11: placements.home.boosts[0].segments_any[0]: unknown segment 'vipp'",
        "rules.yaml:12: frequency.segments_none[0]: unknown segment 'nobody'",
        "rules.yaml:16: experiments.e1.segments_any[1]: unknown segment 'ghosts'",
        "rules.yaml:19: blocks[0].cap.segments_any[0]: unknown segment 'gone'",
    ]
