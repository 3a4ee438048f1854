"""Behaviour events: the schema sites send, and per-event validation.

Each event in a batch is validated on its own so one bad event never costs the good ones; the
error names the field (``events[3].timestamp``) because the person reading it is a front-end
developer with a browser console, not us.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError,
                      field_validator, model_validator)

from engine.events.fields import FieldRequired, error_location, field_path
from engine.settings import EventType


EMAIL_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")  # a login's hashed email (engine.customers.logins)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"
ITEM_EVENTS = frozenset({"product_view", "add_to_cart", "remove_from_cart", "add_to_wishlist",
                         "recommendation_click"})
MAX_PROPERTIES = 32
# What a consent event is about (``properties.purpose``, default profiling): profiling and
# personalisation, or being contacted by email, push or on the site (engine.profiles.consent).
CHANNELS = ("email", "push", "on_site")
PURPOSES = ("profiling", *CHANNELS)
Scalar = str | int | float | bool | None


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str = Field(pattern=ID_PATTERN)
    quantity: StrictInt = Field(1, ge=1, le=100_000)
    price: StrictFloat | None = Field(None, ge=0, le=1e9)


class Event(BaseModel):
    """One behaviour event as accepted by the API, the log and the stream.

    ``ts`` is the event time (client's, or the server's when absent) in unix seconds; ``rt`` is
    when the server accepted it. Profiles are computed from ``ts`` so that a replay of the log
    rebuilds exactly what live processing built.
    """

    # Numbers and booleans must be sent as such (Strict*): "2" is not a quantity, 1 is not true.
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=ID_PATTERN)
    type: EventType
    visitor_id: str = Field(pattern=ID_PATTERN)
    customer_id: str | None = Field(None, pattern=ID_PATTERN)
    item_id: str | None = Field(None, pattern=ID_PATTERN)
    items: tuple[LineItem, ...] | None = Field(None, min_length=1, max_length=1000)
    quantity: StrictInt | None = Field(None, ge=1, le=100_000)
    price: StrictFloat | None = Field(None, ge=0, le=1e9)
    revenue: StrictFloat | None = Field(None, ge=0, le=1e12)
    ts: float
    rt: float
    properties: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    gpc: StrictBool = False  # sent with Global Privacy Control (``Sec-GPC: 1``): the person opts out

    @field_validator("properties")
    @classmethod
    def _small_properties(cls, props: dict[str, Any]) -> dict[str, Any]:
        if len(props) > MAX_PROPERTIES:
            raise ValueError(f"at most {MAX_PROPERTIES} properties")
        for key, value in props.items():
            if len(key) > 64:
                raise ValueError(f"property name longer than 64 characters: {key[:20]!r}...")
            if isinstance(value, str) and len(value) > 512:
                raise ValueError(f"property {key!r} longer than 512 characters")
            if isinstance(value, list) and len(value) > 50:
                raise ValueError(f"property {key!r} has more than 50 values")
        return props

    @model_validator(mode="after")
    def _fields_the_type_needs(self) -> "Event":
        t = self.type
        if t in ITEM_EVENTS and not self.item_id:
            raise FieldRequired(("item_id",), f"is required for {t}")
        if t == "purchase" and not (self.items or self.item_id):
            raise FieldRequired(("items",), "is required for purchase (a list of lines, or item_id for one)")
        if t == "login" and not self.customer_id:
            raise FieldRequired(("customer_id",), "is required for login")
        if t == "login" and "email_sha256" in self.properties and not (
                isinstance(sha := self.properties["email_sha256"], str) and EMAIL_SHA256.fullmatch(sha)):
            raise FieldRequired(("properties", "email_sha256"), "must be the SHA-256 of the email: 64 hex characters")
        if t == "search" and not isinstance(self.properties.get("query"), str):
            raise FieldRequired(("properties", "query"), "is required for search (a string)")
        if t == "consent" and not isinstance(self.properties.get("granted"), bool):
            raise FieldRequired(("properties", "granted"), "is required for consent (true or false)")
        if t == "consent" and self.properties.get("purpose", "profiling") not in PURPOSES:
            raise FieldRequired(("properties", "purpose"), f"must be one of {', '.join(PURPOSES)}")
        if t in ("block_impression", "block_click") and not isinstance(self.properties.get("block_id"), str):
            raise FieldRequired(("properties", "block_id"), f"is required for {t} (a string)")
        return self

    def profiling_choice(self) -> bool | None:
        """What the event says about consent to profiling: False for a withdrawal (a profiling
        consent event that does not grant it, or any event sent with Global Privacy Control,
        whatever it says), True for a grant, None for nothing."""
        return profiling_choice(self.type, self.properties, self.gpc)

    def line_items(self) -> tuple[LineItem, ...]:
        """The items a cart or purchase event is about, whichever way the site sent them."""
        if self.items:
            return self.items
        if self.item_id:
            return (LineItem(item_id=self.item_id, quantity=self.quantity or 1, price=self.price),)
        return ()

    def order_revenue(self) -> float:
        if self.revenue is not None:
            return self.revenue
        return sum((li.price or 0.0) * li.quantity for li in self.line_items())


def profiling_choice(event_type: str | None, properties: dict[str, Any] | None, gpc: bool) -> bool | None:
    """``Event.profiling_choice`` for an event as stored (a log line's dict): the readers of the log
    and of the profiles decide alike."""
    if gpc:
        return False
    if event_type != "consent" or (properties or {}).get("purpose", "profiling") != "profiling":
        return None
    return (properties or {}).get("granted") is True


def _when(types: list[str], then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {"type": {"enum": types}}, "required": ["type"]}, "then": then}


def _property(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": ["properties"], "properties": {"properties": {"required": [name],
                                                                      "properties": {name: schema}}}}


# What ``Event._fields_the_type_needs`` checks, as JSON Schema (``allOf`` of if/then) for the
# OpenAPI description; tests/api/test_openapi.py checks that the two agree.
TYPE_REQUIREMENTS: list[dict[str, Any]] = [
    _when(sorted(ITEM_EVENTS), {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}}),
    _when(["purchase"], {"anyOf": [{"required": ["items"], "properties": {"items": {"type": "array"}}},
                                   {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}}]}),
    _when(["login"], {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}}),
    _when(["login"], {"properties": {"properties": {"properties": {
        "email_sha256": {"type": "string", "pattern": EMAIL_SHA256.pattern}}}}}),
    _when(["search"], _property("query", {"type": "string"})),
    _when(["consent"], _property("granted", {"type": "boolean"})),
    _when(["consent"], {"properties": {"properties": {"properties": {"purpose": {"enum": list(PURPOSES)}}}}}),
    _when(["block_impression", "block_click"], _property("block_id", {"type": "string"})),
]


class FieldError(BaseModel):
    field: str
    message: str


class Rejection(BaseModel):
    index: int
    event_id: str | None
    errors: list[FieldError]


def _parse_timestamp(value: Any, now: float, max_future_skew_s: int) -> float:
    if value is None:
        return now
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string such as 2026-11-23T10:15:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    ts = parsed.timestamp()
    if ts > now + max_future_skew_s:
        raise ValueError(f"is more than {max_future_skew_s}s in the future")
    if ts < 946684800:  # 2000-01-01: a zero or garbage clock, not a real event
        raise ValueError("is before the year 2000")
    return ts


def _too_large(raw: dict[str, Any], max_bytes: int, prefix: str) -> FieldError | None:
    """An error on the field that weighs most when the event is over ``max_bytes`` of JSON."""
    try:
        size = len(orjson.dumps(raw))
        if size <= max_bytes:
            return None
        sizes = {name: len(orjson.dumps(value)) for name, value in raw.items()}
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: validation rejects it anyway
        return None
    heaviest = max(sizes, key=sizes.__getitem__)
    return FieldError(field=field_path((heaviest,), prefix),
                      message=f"too large: the event is {size} bytes of JSON, at most {max_bytes} are accepted "
                              f"per event (this field is {sizes[heaviest]})")


def validate_event(
    raw: Any,
    *,
    index: int,
    prefix: str,
    visitor_id: str | None,
    now: float | None = None,
    max_future_skew_s: int = 300,
    gpc: bool = False,
    max_bytes: int | None = None,
) -> Event | Rejection:
    """Turn one raw JSON value into an Event, or a Rejection that says which field is wrong.

    ``visitor_id`` is the id to use when the event carries none (the cookie, or a freshly issued
    one); ``prefix`` is how the event is addressed in messages (``events[3]`` or empty); ``gpc``:
    the request came with Global Privacy Control, which no field of the event can undo;
    ``max_bytes``: the most JSON one event may weigh (the log keeps every accepted byte).
    """
    now = time.time() if now is None else now
    if not isinstance(raw, dict):
        return Rejection(
            index=index,
            event_id=None,
            errors=[FieldError(field=prefix or "body", message="must be a JSON object")],
        )
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    if max_bytes is not None and (too_large := _too_large(raw, max_bytes, prefix)) is not None:
        return Rejection(index=index, event_id=event_id, errors=[too_large])
    data = dict(raw)
    errors: list[FieldError] = []
    try:
        data["ts"] = _parse_timestamp(data.pop("timestamp", None), now, max_future_skew_s)
    except ValueError as exc:
        errors.append(FieldError(field=field_path(("timestamp",), prefix), message=str(exc)))
        data["ts"] = now
    if "ts" in raw or "rt" in raw:
        errors.append(FieldError(field=field_path(("ts" if "ts" in raw else "rt",), prefix),
                                 message="is set by the server; send timestamp instead"))
    data["rt"] = now
    if gpc:
        data["gpc"] = True
    if data.get("visitor_id") is None and visitor_id is not None:
        data["visitor_id"] = visitor_id
    try:
        event = Event.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = error_location(err)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing" and loc == ("visitor_id",):
                message = "is required (or send the vt_vid cookie)"
            errors.append(FieldError(field=field_path(loc, prefix) or prefix or "event", message=message))
        return Rejection(index=index, event_id=event_id, errors=errors)
    if errors:
        return Rejection(index=index, event_id=event_id, errors=errors)
    return event
