"""Per-event validation: pure logic, no server."""

from __future__ import annotations

import time

import pytest

from engine.events import Event, Rejection, validate_event

NOW = time.time()


def check(raw: object, visitor_id: str | None = "cookie-v") -> Event | Rejection:
    return validate_event(raw, index=0, prefix="events[0]", visitor_id=visitor_id, now=NOW)


def fields(result: Event | Rejection) -> dict[str, str]:
    assert isinstance(result, Rejection), result
    return {e.field: e.message for e in result.errors}


def test_minimal_product_view_gets_server_time_and_cookie_visitor() -> None:
    event = check({"event_id": "e1", "type": "product_view", "item_id": "A1"})
    assert isinstance(event, Event)
    assert event.visitor_id == "cookie-v"
    assert event.ts == NOW and event.rt == NOW


def test_explicit_visitor_wins_over_cookie() -> None:
    event = check({"event_id": "e1", "type": "page_view", "visitor_id": "v9"})
    assert isinstance(event, Event) and event.visitor_id == "v9"


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"type": "page_view"}, "events[0].event_id", "required"),
        ({"event_id": "e", "type": "teleport"}, "events[0].type", "page_view"),
        ({"event_id": "e", "type": "product_view"}, "events[0]", "item_id is required"),
        ({"event_id": "e", "type": "purchase"}, "events[0]", "purchase needs items"),
        ({"event_id": "e", "type": "login"}, "events[0]", "customer_id is required"),
        ({"event_id": "e", "type": "search"}, "events[0]", "properties.query"),
        ({"event_id": "e", "type": "consent", "properties": {"granted": "yes"}}, "events[0]", "granted"),
        ({"event_id": "e", "type": "block_click"}, "events[0]", "block_id"),
        ({"event_id": "e", "type": "add_to_cart", "item_id": "A", "quantity": "two"}, "events[0].quantity", "integer"),
        ({"event_id": "e", "type": "add_to_cart", "item_id": "A", "quantity": 0}, "events[0].quantity", "greater"),
        # JSON types as the schema states them, no coercion (the OpenAPI fuzzing found these accepted)
        ({"event_id": "e", "type": "add_to_cart", "item_id": "A", "quantity": "2"}, "events[0].quantity", "integer"),
        ({"event_id": "e", "type": "add_to_cart", "item_id": "A", "quantity": 2.0}, "events[0].quantity", "integer"),
        ({"event_id": "e", "type": "page_view", "price": "2.5"}, "events[0].price", "number"),
        ({"event_id": "e", "type": "page_view", "gpc": 1}, "events[0].gpc", "boolean"),
        ({"event_id": "e", "type": "page_view", "price": -1}, "events[0].price", "greater"),
        ({"event_id": "e", "type": "page_view", "colour": "red"}, "events[0].colour", "not permitted"),
        ({"event_id": "e", "type": "page_view", "timestamp": "yesterday"}, "events[0].timestamp", "ISO 8601"),
        ({"event_id": "e", "type": "page_view", "timestamp": 12345}, "events[0].timestamp", "ISO 8601"),
        ({"event_id": "e", "type": "page_view", "timestamp": "2099-01-01T00:00:00Z"}, "events[0].timestamp", "future"),
        ({"event_id": "e", "type": "page_view", "timestamp": "1990-01-01T00:00:00Z"}, "events[0].timestamp", "2000"),
        ({"event_id": "e", "type": "page_view", "ts": 5}, "events[0].ts", "set by the server"),
        ({"event_id": "e" * 200, "type": "page_view"}, "events[0].event_id", "pattern"),
        ({"event_id": "bad id!", "type": "page_view"}, "events[0].event_id", "pattern"),
        ({"event_id": "e", "type": "purchase", "items": [{"item_id": "A", "quantity": -2}]},
         "events[0].items[0].quantity", "greater"),
        ({"event_id": "e", "type": "page_view", "properties": {"k": {"nested": 1}}}, "events[0].properties.k", ""),
    ],
)
def test_each_bad_field_is_named(raw: dict, field: str, fragment: str) -> None:
    errors = fields(check(raw))
    matching = [msg for name, msg in errors.items() if name.startswith(field)]
    assert matching, f"expected an error on {field}, got {errors}"
    assert any(fragment in msg for msg in matching), errors


def test_missing_visitor_without_cookie_is_explained() -> None:
    errors = fields(check({"event_id": "e", "type": "page_view"}, visitor_id=None))
    assert "cookie" in errors["events[0].visitor_id"]


def test_non_object_is_rejected() -> None:
    assert fields(check(["not", "an", "object"])) == {"events[0]": "must be a JSON object"}


def test_naive_timestamp_is_utc_and_offsets_are_honoured() -> None:
    a = check({"event_id": "e", "type": "page_view", "timestamp": "2024-05-01T10:00:00"})
    b = check({"event_id": "e", "type": "page_view", "timestamp": "2024-05-01T12:00:00+02:00"})
    assert isinstance(a, Event) and isinstance(b, Event)
    assert a.ts == b.ts


def test_purchase_revenue_defaults_to_lines() -> None:
    event = check({"event_id": "e", "type": "purchase",
                   "items": [{"item_id": "A", "quantity": 2, "price": 3.5}, {"item_id": "B", "price": 1}]})
    assert isinstance(event, Event)
    assert event.order_revenue() == 8.0
    single = check({"event_id": "e", "type": "purchase", "item_id": "A", "quantity": 3, "price": 2})
    assert isinstance(single, Event) and single.order_revenue() == 6.0 and single.line_items()[0].quantity == 3
