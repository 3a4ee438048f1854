"""Per-event validation: pure logic, no server."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from engine.events.schema import Event, Rejection, validate_event
from engine.events.fields import field_errors

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


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"type": "product_view"}, "item_id", "required for product_view"),
        ({"type": "add_to_cart"}, "item_id", "required for add_to_cart"),
        ({"type": "remove_from_cart"}, "item_id", "required for remove_from_cart"),
        ({"type": "add_to_wishlist"}, "item_id", "required for add_to_wishlist"),
        ({"type": "recommendation_click"}, "item_id", "required for recommendation_click"),
        ({"type": "purchase"}, "items", "required for purchase"),
        ({"type": "login"}, "customer_id", "required for login"),
        ({"type": "search"}, "properties.query", "required for search"),
        ({"type": "search", "properties": {"query": 3}}, "properties.query", "a string"),
        ({"type": "consent"}, "properties.granted", "true or false"),
        ({"type": "consent", "properties": {"granted": "yes"}}, "properties.granted", "true or false"),
        ({"type": "block_impression"}, "properties.block_id", "required for block_impression"),
        ({"type": "block_click", "properties": {"block_id": 7}}, "properties.block_id", "required for block_click"),
    ],
)
@pytest.mark.parametrize("prefix", ["events[0]", ""])
def test_a_field_the_type_needs_is_named_exactly(raw: dict, field: str, fragment: str, prefix: str) -> None:
    """The event alone or in a batch: the error is on the field itself, never the whole event."""
    result = validate_event({"event_id": "e", **raw}, index=0, prefix=prefix, visitor_id="v", now=NOW)
    errors = fields(result)
    assert list(errors) == [f"{prefix}.{field}" if prefix else field], errors
    assert fragment in errors[list(errors)[0]]


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


def test_every_report_of_a_model_error_names_the_field() -> None:
    """The importer and the stream report pydantic errors through ``field_errors``: the same path."""
    with pytest.raises(ValidationError) as raised:
        Event.model_validate({"event_id": "e", "type": "search", "visitor_id": "v", "ts": NOW, "rt": NOW})
    assert [e["field"] for e in field_errors(raised.value, whole="row")] == ["properties.query"]


def test_an_event_over_max_bytes_names_its_heaviest_field() -> None:
    purchase = {"event_id": "e", "type": "purchase",
                "items": [{"item_id": f"I{n}", "quantity": 1, "price": 1.5} for n in range(200)]}
    assert isinstance(validate_event(purchase, index=0, prefix="", visitor_id="v", now=NOW, max_bytes=100_000), Event)
    result = validate_event(purchase, index=2, prefix="events[2]", visitor_id="v", now=NOW, max_bytes=8192)
    assert isinstance(result, Rejection) and result.index == 2 and result.event_id == "e"
    assert [e.field for e in result.errors] == ["events[2].items"]
    assert "at most 8192" in result.errors[0].message
