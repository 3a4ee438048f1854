"""engine.profiles.view: a profile as the admin API shows it (readable names, ISO dates, scores
relative to the strongest, the visit as of now). The HTTP story is tests/api/test_admin.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.catalog import ItemInfo, ItemLookup
from engine.merch.segments import DEFAULT_SET, members
from engine.profiles import CustomerProfile, VisitorProfile
from engine.profiles import view
from engine.profiles.view import DAY, iso

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc).timestamp()
TIMEOUT = 1800.0
CATALOGUE = {
    "mug1": ItemInfo("kitchen.mugs", "acme", 5.0),
    "mug2": ItemInfo("kitchen.mugs", "acme", 7.0),
    "lamp": ItemInfo("lighting", "lumo", 40.0),
    "nocat": ItemInfo(None, "acme", 1.0),
}


def describe(visitor_id: str, v: VisitorProfile, customer_id: str | None, c: CustomerProfile | None, now: float,
             timeout: float, lookup: ItemLookup) -> dict[str, Any]:
    """The view with the built-in segments, as a shop without ``segments:`` sees it."""
    return view.describe(visitor_id, v, customer_id, c, now, timeout, lookup, segments=members(DEFAULT_SET, v, c, now))


def test_iso_is_utc_with_a_z_and_zero_is_never() -> None:
    assert iso(NOW) == "2026-12-10T12:00:00Z"
    assert iso(0) is None and iso(0.0) is None


def test_a_visit_under_way_shows_its_items_categories_and_searches() -> None:
    v = VisitorProfile(first_seen=NOW - DAY, last_seen=NOW - 60, visits=2, session_start=NOW - 600,
                       session_items=["lamp", "mug1", "gone", "nocat", "mug2"], searches=["mugs"],
                       last_visit_items=["mug1"])
    out = describe("v1", v, None, None, NOW, TIMEOUT, CATALOGUE.get)
    session = out["visitor"]["session"]
    assert out["visitor"]["in_session"] is True
    assert session == {"started": "2026-12-10T11:50:00Z", "items": ["lamp", "mug1", "gone", "nocat", "mug2"],
                       "categories": {"kitchen.mugs": 2, "lighting": 1},  # unknown and uncategorised: left out
                       "searches": ["mugs"]}
    assert list(session["categories"]) == ["kitchen.mugs", "lighting"]  # most viewed first
    assert out["visitor"]["last_visit_items"] == ["mug1"]
    assert out["segments"] == ["returning"]


def test_a_visit_that_timed_out_reads_as_the_last_visit() -> None:
    v = VisitorProfile(first_seen=NOW - DAY, last_seen=NOW - TIMEOUT - 1, visits=1,
                       session_start=NOW - TIMEOUT - 600, session_items=["mug2", "mug1"], searches=["mugs"],
                       last_visit_items=["mug1", "lamp"])
    out = describe("v1", v, None, None, NOW, TIMEOUT, CATALOGUE.get)["visitor"]
    assert out["in_session"] is False
    assert out["session"] == {"started": None, "items": [], "categories": {}, "searches": []}
    assert out["last_visit_items"] == ["mug2", "mug1", "lamp"]  # the ended visit first, no repeats


def test_affinities_are_relative_rounded_and_strongest_first() -> None:
    v = VisitorProfile(visits=1, last_seen=NOW, category_affinity={"a": 1.0, "b": 3.0, "c": 2.0},
                       brand_affinity={"x": 0.004})
    out = describe("v1", v, None, None, NOW, TIMEOUT, CATALOGUE.get)["visitor"]
    assert out["category_affinity"] == {"b": 1.0, "c": 0.667, "a": 0.333}
    assert list(out["category_affinity"]) == ["b", "c", "a"]
    assert out["brand_affinity"] == {"x": 1.0}


def test_an_anonymous_visitor_has_no_customer_part_and_unset_dates_are_null() -> None:
    out = describe("v1", VisitorProfile(consent=False), None, None, NOW, TIMEOUT, CATALOGUE.get)
    assert "customer" not in out and out["customer_id"] is None
    assert out["visitor"]["first_seen"] is None and out["visitor"]["cart_updated"] is None
    assert out["visitor"]["consent"] is False and out["visitor"]["in_session"] is False
    assert out["segments"] == ["new"]


def test_a_linked_cookie_whose_customer_profile_is_gone_names_the_customer_only() -> None:
    out = describe("v1", VisitorProfile(customer_id="c1"), "c1", None, NOW, TIMEOUT, CATALOGUE.get)
    assert out["customer_id"] == "c1" and "customer" not in out


def test_a_customer_reads_with_rfm_most_recent_purchases_first_and_their_consent() -> None:
    c = CustomerProfile(first_seen=NOW - 400 * DAY, last_seen=NOW - DAY, orders=4, revenue=120.5,
                        first_order=NOW - 300 * DAY, last_order=NOW - 12.34 * DAY,
                        purchases={"old": 1, "mid": 2, "new": 1}, recent_items=["lamp"],
                        category_affinity={"kitchen": 0.5, "lighting": 2.0}, visitors=["v1", "v2"],
                        traits={"tier": "gold"}, consent=True)
    out = describe("v1", VisitorProfile(visits=1, customer_id="c1", orders=1), "c1", c, NOW, TIMEOUT,
                   CATALOGUE.get)
    customer = out["customer"]
    assert customer["rfm"] == {"recency_days": 12.3, "frequency": 4, "monetary": 120.5}
    assert list(customer["purchases"]) == ["new", "mid", "old"] and customer["purchases"]["mid"] == 2
    assert customer["first_order"] == "2026-02-13T12:00:00Z"
    assert customer["category_affinity"] == {"lighting": 1.0, "kitchen": 0.25}
    assert (customer["devices"], customer["traits"], customer["consent"]) == (["v1", "v2"], {"tier": "gold"}, True)
    assert out["segments"] == ["new", "loyal"]  # segments count the customer's orders with the cookie's


def test_a_customer_who_never_ordered_has_no_recency() -> None:
    out = describe("v1", VisitorProfile(), "c1", CustomerProfile(first_seen=NOW), NOW, TIMEOUT, CATALOGUE.get)
    assert out["customer"]["rfm"] == {"recency_days": None, "frequency": 0, "monetary": 0.0}
    assert out["customer"]["last_order"] is None
