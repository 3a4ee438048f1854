"""How events change profiles: pure logic, no Redis."""

from __future__ import annotations

import itertools

import orjson

import pytest

from engine.events.schema import Event
from engine.catalog import ItemInfo
from engine.profiles.codec import CorruptProfile, encode
from engine.profiles.consent import current
from engine.profiles.fold import apply_event, fold_event
from engine.profiles.shapes import CustomerProfile, ProfileConfig, VisitorProfile
from engine.profiles.visits import history_items, visit_items

T0 = 1_700_000_000.0
CATALOGUE = {
    "mug1": ItemInfo("kitchen.mugs", "acme", 5.0),
    "mug2": ItemInfo("kitchen.mugs", "acme", 7.0),
    "lamp": ItemInfo("lighting.lights", "lumo", 40.0),
}
CFG = ProfileConfig(session_timeout_s=1800, affinity_half_life_s=86400,
                    weights={"product_view": 1.0, "add_to_cart": 4.0, "purchase": 8.0})
_ids = itertools.count()


def ev(type_: str, ts: float, visitor: str = "v1", **fields: object) -> Event:
    return Event(event_id=f"e{next(_ids)}", type=type_, visitor_id=visitor, ts=ts, rt=ts, **fields)


def fold(events: list[Event], visitor: dict | None = None, customer: dict | None = None
         ) -> tuple[VisitorProfile, CustomerProfile | None]:
    c = None
    for e in events:
        applied = apply_event(visitor, customer, e, CATALOGUE.get, CFG)
        visitor = applied.visitor.to_json()
        if applied.customer is not None:
            customer = applied.customer.to_json()
        c = CustomerProfile.from_json(customer) if customer else None
    return VisitorProfile.from_json(visitor), c


def test_session_items_in_order_and_rollover_after_inactivity() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1"), ev("product_view", T0 + 60, item_id="lamp"),
                 ev("product_view", T0 + 120, item_id="mug1")])
    assert v.session_items == ["mug1", "lamp"] and v.visits == 1
    v2, _ = fold([ev("product_view", T0 + 120 + 1801, item_id="mug2")], visitor=v.to_json())
    assert v2.visits == 2
    assert v2.session_items == ["mug2"]
    assert v2.last_visit_items == ["mug1", "lamp"]
    assert v2.first_seen == T0


def test_expired_session_reads_as_last_visit_before_any_new_event() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1")])
    assert visit_items(v, T0 + 10, 1800) == (["mug1"], [])
    assert visit_items(v, T0 + 3600, 1800) == ([], ["mug1"])


def test_cart_add_remove_and_purchase_clears_it() -> None:
    v, _ = fold([ev("add_to_cart", T0, item_id="mug1", quantity=2), ev("add_to_cart", T0 + 1, item_id="lamp"),
                 ev("remove_from_cart", T0 + 2, item_id="mug1", quantity=1)])
    assert v.cart == {"mug1": 1, "lamp": 1}
    v, _ = fold([ev("remove_from_cart", T0 + 3, item_id="mug1")], visitor=v.to_json())
    assert v.cart == {"lamp": 1}
    v, _ = fold([ev("purchase", T0 + 4, items=[{"item_id": "lamp", "quantity": 1, "price": 40}])],
                visitor=v.to_json())
    assert v.cart == {} and v.orders == 1 and v.revenue == 40 and v.purchases == {"lamp": 1}


def test_affinities_weight_by_type_and_decay_with_time() -> None:
    v, _ = fold([ev("product_view", T0, item_id="lamp"), ev("add_to_cart", T0 + 1, item_id="mug1")])
    assert v.category_affinity["kitchen.mugs"] > v.category_affinity["lighting.lights"]
    v2, _ = fold([ev("page_view", T0 + 1 + 86400)], visitor=v.to_json())
    assert v2.category_affinity["kitchen.mugs"] == pytest.approx(v.category_affinity["kitchen.mugs"] / 2, rel=1e-2)
    assert v2.brand_affinity["acme"] == pytest.approx(v.brand_affinity["acme"] / 2, rel=1e-2)


def test_out_of_order_event_does_not_rewind_the_clock() -> None:
    v, _ = fold([ev("product_view", T0 + 100, item_id="mug1"), ev("product_view", T0, item_id="lamp")])
    assert v.last_seen == T0 + 100 and v.visits == 1


def test_login_stitches_anonymous_history_once() -> None:
    anon = [ev("product_view", T0, item_id="mug1"),
            ev("purchase", T0 + 10, items=[{"item_id": "mug1", "quantity": 2, "price": 5}])]
    v, _ = fold(anon)
    assert v.orders == 1 and v.purchases == {"mug1": 2}
    v, c = fold([ev("login", T0 + 20, customer_id="c1", properties={"first_name": "Ada"})], visitor=v.to_json())
    assert c is not None
    assert c.orders == 1 and c.revenue == 10 and c.purchases == {"mug1": 2}
    assert c.visitors == ["v1"] and c.traits == {"first_name": "Ada"}
    assert v.customer_id == "c1" and v.orders == 0 and v.purchases == {}
    assert "kitchen.mugs" in c.category_affinity
    # Logging in again (same cookie) or sending the customer id changes no counts.
    v2, c2 = fold([ev("login", T0 + 30, customer_id="c1"), ev("page_view", T0 + 40, customer_id="c1")],
                  visitor=v.to_json(), customer=c.to_json())
    assert c2 is not None
    assert (c2.orders, c2.revenue, c2.purchases) == (1, 10, {"mug1": 2})
    assert c2.category_affinity.keys() == c.category_affinity.keys()


def test_second_device_adds_its_own_history_and_later_purchases_go_to_the_customer() -> None:
    _, c = fold([ev("login", T0, customer_id="c1")])
    assert c is not None
    phone, _ = fold([ev("purchase", T0 + 5, visitor="phone", item_id="lamp", price=40)])
    phone, c = fold([ev("login", T0 + 10, visitor="phone", customer_id="c1")],
                    visitor=phone.to_json(), customer=c.to_json())
    assert c is not None and sorted(c.visitors) == ["phone", "v1"] and c.orders == 1
    phone, c = fold([ev("purchase", T0 + 20, visitor="phone", item_id="mug2", price=7)],
                    visitor=phone.to_json(), customer=c.to_json())
    assert c is not None and c.orders == 2 and c.revenue == 47 and phone.orders == 0
    assert list(c.purchases) == ["lamp", "mug2"]


def test_withdrawn_consent_forgets_behaviour_and_stops_profiling() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1"), ev("add_to_cart", T0 + 1, item_id="mug1")])
    v, _ = fold([ev("consent", T0 + 2, properties={"granted": False})], visitor=v.to_json())
    assert v.consent is False and v.session_items == [] and v.cart == {} and v.category_affinity == {}
    v, _ = fold([ev("product_view", T0 + 3, item_id="lamp")], visitor=v.to_json())
    assert v.session_items == []
    v, _ = fold([ev("consent", T0 + 4, properties={"granted": True}), ev("product_view", T0 + 5, item_id="lamp")],
                visitor=v.to_json())
    assert v.consent is True and v.session_items == ["lamp"]


def test_a_withdrawal_forgets_the_customer_and_its_other_cookies_even_after_a_new_grant() -> None:
    laptop, alice = fold([ev("login", T0, "laptop", customer_id="alice", properties={"first_name": "Alice"}),
                          ev("purchase", T0 + 1, "laptop", item_id="lamp")])
    phone, alice = fold([ev("login", T0 + 2, "phone", customer_id="alice"),
                         ev("product_view", T0 + 3, "phone", item_id="mug1")], customer=alice.to_json())
    laptop, alice = fold([ev("consent", T0 + 4, "laptop", properties={"granted": False})],
                         visitor=laptop.to_json(), customer=alice.to_json())
    assert alice == CustomerProfile(last_seen=T0 + 4, consent=False, withdrawals=1, withdrawn_at=T0 + 4)
    assert laptop == VisitorProfile(first_seen=T0, last_seen=T0 + 4, customer_id="alice", consent=False,
                                    withdrawals=1, withdrawn_at=T0 + 4)
    assert current(phone, alice).session_items == [] and current(phone, None) == phone  # not seen since
    _, alice = fold([ev("consent", T0 + 5, "laptop", properties={"granted": True})],
                    visitor=laptop.to_json(), customer=alice.to_json())
    phone, alice = fold([ev("product_view", T0 + 6, "phone", item_id="mug2")],
                        visitor=phone.to_json(), customer=alice.to_json())
    assert phone.session_items == ["mug2"] and alice.recent_items == ["mug2"]  # mug1 stays forgotten
    tablet, alice = fold([ev("product_view", T0 + 7, "tablet", item_id="lamp"),  # first linked after: clean
                          ev("login", T0 + 8, "tablet", customer_id="alice")], customer=alice.to_json())
    assert tablet.session_items == [] and alice.recent_items == ["mug2"] and tablet.withdrawals == 1


def test_trending_weights_follow_event_types() -> None:
    applied = apply_event(None, None, ev("add_to_cart", T0, item_id="mug1"), CATALOGUE.get, CFG)
    assert applied.trending == [("mug1", 4.0)]
    assert apply_event(None, None, ev("search", T0, properties={"query": "Mug"}), CATALOGUE.get, CFG).trending == []


def test_apply_event_does_not_change_its_inputs() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1")])
    stored = v.to_json()
    snapshot = repr(stored)
    apply_event(stored, None, ev("product_view", T0 + 1, item_id="lamp"), CATALOGUE.get, CFG)
    assert repr(stored) == snapshot


def test_stored_form_is_small_exact_and_reads_old_json() -> None:
    events = [ev("product_view", T0 + i * 30.25, item_id=f"item-{i:05d}") for i in range(12)]
    events.append(ev("add_to_cart", T0 + 400, item_id="mug1"))
    events.append(ev("search", T0 + 410, properties={"query": "christmas lights"}))
    v, _ = fold(events)
    stored = encode(v)
    assert len(stored) < 250  # the value of a typical visitor: the key and Redis' overhead come on top
    assert VisitorProfile.decode(stored) == v  # the fold already rounds as storing does
    assert VisitorProfile.decode(orjson.dumps(v.to_json())) == v  # profiles stored as JSON still read
    assert VisitorProfile.decode(None) == VisitorProfile()
    for garbage in (b"[not a profile", b"{not json", b"\x93\x01\x02\x03"):
        with pytest.raises(CorruptProfile):
            VisitorProfile.decode(garbage)


def test_folding_in_a_row_equals_storing_after_each_event() -> None:
    events = [ev("product_view", T0 + i * 977.3, item_id=["mug1", "lamp", "mug2"][i % 3]) for i in range(30)]
    events += [ev("page_view", T0 + 40_000, properties={"category": "Kitchen.Mugs"}),
               ev("purchase", T0 + 40_100, item_id="lamp", price=39.99)]
    together = VisitorProfile()
    for e in events:
        fold_event(together, None, e, CATALOGUE.get, CFG)
    stored: bytes | None = None
    for e in events:
        v = VisitorProfile.decode(stored)
        fold_event(v, None, e, CATALOGUE.get, CFG)
        stored = encode(v)
    assert VisitorProfile.decode(stored) == together
    assert together.category_affinity["kitchen.mugs"] > 0


def test_history_puts_the_current_visit_first() -> None:
    v, _ = fold([ev("product_view", T0, item_id="lamp"), ev("product_view", T0 + 4000, item_id="mug1"),
                 ev("add_to_cart", T0 + 4001, item_id="mug2")])
    items = list(history_items(v, None, T0 + 4002, 1800))
    assert items[0][0] == "mug2" and items[0][2] == "viewed"
    assert ("mug2", 3.0, "carted") in items
    assert [i for i, _, _ in items].index("lamp") > [i for i, _, _ in items].index("mug1")


def test_a_profile_said_not_linked_is_linked_to_no_customer() -> None:
    """``maybe_linked`` spares anonymous visitors' requests an unpack: it may say True for a profile
    without a customer (then the unpack decides), never False for one with a customer."""
    anonymous, _ = fold([ev("product_view", T0, item_id="mug1"), ev("search", T0 + 1, properties={"query": "mugs"}),
                         ev("add_to_cart", T0 + 2, item_id="lamp")])
    linked, _ = fold([ev("login", T0 + 3, customer_id="c")], visitor=anonymous.to_json())
    assert not VisitorProfile.maybe_linked(encode(anonymous))
    assert VisitorProfile.maybe_linked(encode(linked))
    assert VisitorProfile.maybe_linked(orjson.dumps(linked.to_json()))  # stored before MessagePack
    assert not VisitorProfile.maybe_linked(None) and not VisitorProfile.maybe_linked(b"")
    # A value holding the key's bytes (the search "c", or the end of "ác"): True, and the unpack
    # then finds no customer.
    lookalike = VisitorProfile(searches=["c"], session_items=["\u00e1c"])
    assert VisitorProfile.maybe_linked(encode(lookalike)) and VisitorProfile.decode(encode(lookalike)).customer_id is None
