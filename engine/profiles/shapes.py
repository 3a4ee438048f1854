"""Visitor and customer profiles: their fields, caps and short stored keys.

The session lives inside the visitor profile: a visit ends after ``session_timeout_s`` of
inactivity (measured in event time, so replays agree with live processing), at which point the
session's items become "items of the last visit". Keeping both in one key means one Redis read per
recommendation and no item list stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from engine.profiles.codec import _compact, _expand, decode_dict
from engine.settings import DEFAULT_EVENT_WEIGHTS

SESSION_ITEMS = 20
LAST_VISIT_ITEMS = 10
SEARCHES = 5
CART_ITEMS = 50
AFFINITIES = 5
BRANDS = 5
PAGE_CATEGORY_WEIGHT = 0.5  # a category page seen: interest, weaker than a product view
VISITOR_PURCHASES = 30
CUSTOMER_PURCHASES = 100
CUSTOMER_RECENT = 20
CUSTOMER_VISITORS = 10
WATCHING = 20  # wishlisted items kept as back-in-stock and price watches (engine.profiles.preferences)
TRAITS = ("first_name", "tier", "max_messages_per_week")  # the last: engine.triggers.suppress


@dataclass(frozen=True)
class ProfileConfig:
    session_timeout_s: float = 1800
    affinity_half_life_s: float = 14 * 86400
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    consent_required: bool = False  # opt-in: nobody is profiled before granting consent

    def weight(self, event_type: str) -> float:
        return self.weights.get(event_type, 0.0)


@dataclass
class VisitorProfile:
    first_seen: float = 0.0
    last_seen: float = 0.0
    visits: int = 0
    session_start: float = 0.0
    session_items: list[str] = field(default_factory=list)  # most recent first, distinct
    searches: list[str] = field(default_factory=list)  # most recent first
    last_visit_items: list[str] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)
    cart_updated: float = 0.0
    category_affinity: dict[str, float] = field(default_factory=dict)  # decayed to last_seen
    brand_affinity: dict[str, float] = field(default_factory=dict)
    price_mean: float | None = None
    price_weight: float = 0.0
    purchases: dict[str, int] = field(default_factory=dict)  # bought while not linked to a customer
    orders: int = 0
    revenue: float = 0.0
    customer_id: str | None = None
    consent: bool | None = None
    withdrawals: int = 0  # the customer's withdrawals this cookie's behaviour is forgotten up to
    withdrawn_at: float = 0.0  # acceptance time of the cookie's last withdrawal (0: never)
    channels: dict[str, bool] = field(default_factory=dict)  # consent to be contacted ("email", "push"), as chosen
    watching: list[str] = field(default_factory=list)  # wishlisted while not linked to a customer, most recent first

    _KEYS = {
        "first_seen": "f", "last_seen": "l", "visits": "n", "session_start": "s",
        "session_items": "si", "searches": "q",
        "last_visit_items": "lv", "cart": "ct", "cart_updated": "cu",
        "category_affinity": "ca", "brand_affinity": "ba", "price_mean": "pm",
        "price_weight": "pw", "purchases": "p", "orders": "o", "revenue": "r",
        "customer_id": "c", "consent": "k", "withdrawals": "w", "withdrawn_at": "wa", "channels": "kc",
        "watching": "wl",
    }

    def to_json(self) -> dict[str, Any]:
        return _compact(self, self._KEYS)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "VisitorProfile":
        return _expand(cls, cls._KEYS, data)

    @classmethod
    def decode(cls, raw: bytes | None) -> "VisitorProfile":
        return cls.from_stored(decode_dict(raw))

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> "VisitorProfile":
        """From ``decode_dict``'s result, which it keeps (nobody else holds it)."""
        return _expand(cls, cls._KEYS, data, copy=False)

    @classmethod
    def customer_of(cls, data: dict[str, Any] | None) -> str | None:
        """The customer a stored profile (``decode_dict``'s result) is linked to, without expanding it."""
        return data.get(cls._KEYS["customer_id"]) if data else None

    @classmethod
    def maybe_linked(cls, raw: bytes | None) -> bool:
        """False only for a stored profile that is certainly linked to no customer, told without
        unpacking it (~6 µs on every anonymous visitor's request): MessagePack writes the key
        ``c`` as the two bytes ``\xa1c``, so a profile without them has no such key. Where they
        are (a linked profile, or the bytes inside some other value), unpack it to know."""
        return bool(raw) and (raw[:1] == b"{" or _CUSTOMER_KEY in raw)  # type: ignore[operator]

    def in_session(self, now: float, timeout_s: float) -> bool:
        return self.visits > 0 and now - self.last_seen <= timeout_s


@dataclass
class CustomerProfile:
    first_seen: float = 0.0
    last_seen: float = 0.0
    orders: int = 0
    revenue: float = 0.0
    first_order: float = 0.0
    last_order: float = 0.0
    purchases: dict[str, int] = field(default_factory=dict)  # least recent first
    recent_items: list[str] = field(default_factory=list)  # across devices, most recent first
    category_affinity: dict[str, float] = field(default_factory=dict)  # decayed to last_seen
    brand_affinity: dict[str, float] = field(default_factory=dict)
    visitors: list[str] = field(default_factory=list)
    traits: dict[str, str] = field(default_factory=dict)
    consent: bool | None = None  # False: withdrawn on one of the person's devices
    withdrawals: int = 0  # how many times consent was withdrawn: the cookies' behaviour until then is gone
    withdrawn_at: float = 0.0  # acceptance time of the last withdrawal (0: never)
    channels: dict[str, bool] = field(default_factory=dict)  # consent to be contacted ("email", "push"), as chosen
    watching: list[str] = field(default_factory=list)  # wishlisted items, across devices, most recent first

    _KEYS = {
        "first_seen": "f", "last_seen": "l", "orders": "o", "revenue": "r",
        "first_order": "fo", "last_order": "lo", "purchases": "p", "recent_items": "ri",
        "category_affinity": "ca", "brand_affinity": "ba", "visitors": "v", "traits": "t",
        "consent": "k", "withdrawals": "w", "withdrawn_at": "wa", "channels": "kc", "watching": "wl",
    }

    def to_json(self) -> dict[str, Any]:
        return _compact(self, self._KEYS)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "CustomerProfile":
        return _expand(cls, cls._KEYS, data)

    @classmethod
    def decode(cls, raw: bytes | None) -> "CustomerProfile":
        return _expand(cls, cls._KEYS, decode_dict(raw), copy=False)


_CUSTOMER_KEY = msgpack.packb(VisitorProfile._KEYS["customer_id"])  # b"\xa1c"
