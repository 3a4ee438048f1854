"""Visitor and customer profiles, and how one event changes them.

Everything here is pure: ``apply_event`` takes the stored profiles and an event and returns the new
profiles, so the same code runs in the API process, in a faust worker and in a replay, and can be
tested without Redis. Profiles are stored as MessagePack maps with one- or two-letter keys, whole
seconds, and scores in thousandths (see ``to_json`` and ``encode``), because Redis memory per
visitor is a product bar (<= 400 bytes for a typical one); ``GET /v1/profiles/{id}`` shows them
readable.

The session lives inside the visitor profile: a visit ends after ``session_timeout_s`` of
inactivity (measured in event time, so replays agree with live processing), at which point the
session's items become "items of the last visit". Keeping both in one key means one Redis read per
recommendation and no item list stored twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
import orjson

from engine.events.schema import Event
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
TRAITS = ("first_name", "tier")


class ItemInfo(NamedTuple):
    category: str | None
    brand: str | None
    price: float | None


ItemLookup = Callable[[str], ItemInfo | None]


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

    _KEYS = {
        "first_seen": "f", "last_seen": "l", "visits": "n", "session_start": "s",
        "session_items": "si", "searches": "q",
        "last_visit_items": "lv", "cart": "ct", "cart_updated": "cu",
        "category_affinity": "ca", "brand_affinity": "ba", "price_mean": "pm",
        "price_weight": "pw", "purchases": "p", "orders": "o", "revenue": "r",
        "customer_id": "c", "consent": "k", "withdrawals": "w", "withdrawn_at": "wa",
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

    _KEYS = {
        "first_seen": "f", "last_seen": "l", "orders": "o", "revenue": "r",
        "first_order": "fo", "last_order": "lo", "purchases": "p", "recent_items": "ri",
        "category_affinity": "ca", "brand_affinity": "ba", "visitors": "v", "traits": "t",
        "consent": "k", "withdrawals": "w", "withdrawn_at": "wa",
    }

    def to_json(self) -> dict[str, Any]:
        return _compact(self, self._KEYS)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "CustomerProfile":
        return _expand(cls, cls._KEYS, data)

    @classmethod
    def decode(cls, raw: bytes | None) -> "CustomerProfile":
        return _expand(cls, cls._KEYS, decode_dict(raw), copy=False)


# How fields are stored: whole seconds, scores in thousandths, prices in cents (all integers,
# which MessagePack packs in 1-5 bytes), and nothing for an empty or zero field.
TIME_FIELDS = frozenset({"first_seen", "last_seen", "session_start", "cart_updated", "first_order", "last_order",
                         "withdrawn_at"})
SCORE_FIELDS = frozenset({"category_affinity", "brand_affinity"})


def _milli(value: float) -> int:
    return round(value * 1000)


def _cents(value: float) -> int:
    return round(value * 100)


def _compact(obj: Any, keys: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in keys.items():
        value = getattr(obj, name)
        if value is None or value == 0 or value == [] or value == {}:
            if value is False:  # consent=False must survive
                out[key] = value
            continue
        if name in TIME_FIELDS:
            value = round(value)
        elif name in SCORE_FIELDS:
            value = {k: m for k, v in value.items() if (m := _milli(v)) > 0}
        elif name == "price_mean":
            value = _cents(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def _expand(cls: Any, keys: dict[str, str], data: dict[str, Any] | None, copy: bool = True) -> Any:
    """``copy=False`` for a dict nobody else holds (just decoded): saves a copy of each container
    on every request."""
    if not data:
        return cls()
    values: dict[str, Any] = {}
    for name, key in keys.items():
        if key not in data:
            continue
        value = data[key]
        if name in SCORE_FIELDS:
            value = {k: v / 1000 for k, v in value.items()}
        elif name == "price_mean":
            value = value / 100
        elif copy and isinstance(value, (list, dict)):
            value = type(value)(value)  # a copy: folding events never changes the caller's data
        values[name] = value
    return cls(**values)


def quantize(profile: "VisitorProfile | CustomerProfile") -> None:
    """Round in memory exactly as storing rounds, so folding n events in a row gives what n
    separate store-and-load steps give (batching never changes a profile)."""
    for name in TIME_FIELDS:
        if hasattr(profile, name):
            setattr(profile, name, float(round(getattr(profile, name))))
    for name in SCORE_FIELDS:
        setattr(profile, name, {k: m / 1000 for k, v in getattr(profile, name).items() if (m := _milli(v)) > 0})


def encode(profile: "VisitorProfile | CustomerProfile") -> bytes:
    return msgpack.packb(profile.to_json())


EMPTY_PROFILE = msgpack.packb({})
_CUSTOMER_KEY = msgpack.packb(VisitorProfile._KEYS["customer_id"])  # b"\xa1c"


class CorruptProfile(ValueError):
    """A stored value that is not a profile: its events cannot be applied (they dead-letter)."""


def decode_dict(raw: bytes | None) -> dict[str, Any] | None:
    """A stored profile as its short-key dict; profiles written as JSON (before MessagePack) still
    read: a MessagePack map never starts with ``{``."""
    if not raw:
        return None
    try:
        data = orjson.loads(raw) if raw[:1] == b"{" else msgpack.unpackb(raw)
    except ValueError as exc:  # both libraries' decode errors are ValueErrors
        raise CorruptProfile(f"stored profile is not readable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise CorruptProfile(f"stored profile is a {type(data).__name__}, not a map")
    return data


# ---------------------------------------------------------------- small helpers
# They change the profile's containers in place: a profile is private to the fold that loaded it,
# and a purchase of 300 lines must not copy a 100-entry dict 300 times.


def push_recent(items: list[str], item: str, cap: int) -> None:
    """Most recent first, no repeats."""
    if item in items:
        items.remove(item)
    items.insert(0, item)
    del items[cap:]


def decay(values: dict[str, float], elapsed_s: float, half_life_s: float) -> None:
    if elapsed_s > 0 and values:
        factor = 0.5 ** (elapsed_s / half_life_s)
        for key in values:
            values[key] *= factor


def add_weight(values: dict[str, float], key: str | None, weight: float, cap: int) -> None:
    """Add to a decayed score; past ``cap`` entries the weakest one goes."""
    if not key or weight <= 0:
        return
    values[key] = values.get(key, 0.0) + weight
    if len(values) > cap:
        del values[min(values, key=values.__getitem__)]


def merge_scores(into: dict[str, float], other: dict[str, float], cap: int) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0.0) + value
    while len(into) > cap:
        del into[min(into, key=into.__getitem__)]


def bump_count(counts: dict[str, int], key: str, by: int, cap: int) -> None:
    """Add ``by`` and make ``key`` the most recent (last); past ``cap`` the oldest goes."""
    total = counts.pop(key, 0) + by
    if total > 0:
        counts[key] = total
    while len(counts) > cap:
        del counts[next(iter(counts))]



# ---------------------------------------------------------------- applying one event


@dataclass
class Applied:
    """The outcome of one event: new profiles plus the counters it feeds."""

    visitor: VisitorProfile
    customer: CustomerProfile | None
    customer_id: str | None
    trending: list[tuple[str, float]]  # (item_id, weight) at event time


def _touch_visit(v: VisitorProfile, ts: float, cfg: ProfileConfig) -> bool:
    """Count the event's visit; True for a late event, one of a visit before the one under way
    (by its timestamp: it ended more than the timeout before this visit began)."""
    if v.visits and ts < v.first_seen:  # seen earlier than thought: a visit before all known ones?
        if v.first_seen - ts > cfg.session_timeout_s:
            v.visits += 1
        v.first_seen = ts
    if v.visits and ts < v.session_start - cfg.session_timeout_s:
        return True
    if v.visits and ts < v.session_start:  # the visit under way began earlier
        v.session_start = ts
    if v.visits == 0:
        v.first_seen = ts
    if v.visits == 0 or ts - v.last_seen > cfg.session_timeout_s:
        v.visits += 1
        if v.session_items:
            v.last_visit_items = v.session_items[:LAST_VISIT_ITEMS]
        v.session_items, v.searches = [], []
        v.session_start = ts
    if ts > v.last_seen:
        decay(v.category_affinity, ts - v.last_seen, cfg.affinity_half_life_s)
        decay(v.brand_affinity, ts - v.last_seen, cfg.affinity_half_life_s)
        v.last_seen = ts
    return False


def _touch_customer(c: CustomerProfile, ts: float, cfg: ProfileConfig) -> None:
    if not c.first_seen or ts < c.first_seen:
        c.first_seen = ts
    if ts > c.last_seen:
        if c.last_seen:
            decay(c.category_affinity, ts - c.last_seen, cfg.affinity_half_life_s)
            decay(c.brand_affinity, ts - c.last_seen, cfg.affinity_half_life_s)
        c.last_seen = ts


def stitch(visitor_id: str, v: VisitorProfile, c: CustomerProfile, customer_id: str, ts: float,
           cfg: ProfileConfig) -> None:
    """Fold an anonymous cookie's history into the customer it turned out to be.

    Runs once per (cookie, customer): afterwards the cookie is marked as linked and its later
    events update the customer directly, so nothing is counted twice however often they log in.
    """
    if v.customer_id == customer_id:
        if visitor_id not in c.visitors:  # e.g. the customer profile expired or was erased
            c.visitors = [visitor_id, *c.visitors][:CUSTOMER_VISITORS]
        return
    first_link = v.customer_id is None
    _touch_customer(c, ts, cfg)
    c.visitors = [visitor_id, *(x for x in c.visitors if x != visitor_id)][:CUSTOMER_VISITORS]
    for item, qty in v.purchases.items():
        bump_count(c.purchases, item, qty, CUSTOMER_PURCHASES)
    if v.orders:
        c.first_order = min(c.first_order or ts, v.first_seen or ts)
        c.last_order = max(c.last_order, v.last_seen)
    c.orders += v.orders
    c.revenue = round(c.revenue + v.revenue, 2)
    v.purchases, v.orders, v.revenue = {}, 0, 0.0
    if first_link:
        # The visitor's scores are as of its last_seen; bring them to the customer's clock.
        lag = c.last_seen - v.last_seen
        for mine, theirs, cap in ((c.category_affinity, v.category_affinity, AFFINITIES),
                                  (c.brand_affinity, v.brand_affinity, BRANDS)):
            scaled = dict(theirs)
            decay(scaled, lag, cfg.affinity_half_life_s)
            merge_scores(mine, scaled, cap)
        recent = [*v.session_items, *v.last_visit_items, *c.recent_items]
        c.recent_items = list(dict.fromkeys(recent))[:CUSTOMER_RECENT]
    v.customer_id = customer_id


def _interest(v: VisitorProfile, c: CustomerProfile | None, item: str, info: ItemInfo | None,
              weight: float, price_seen: float | None, late: bool = False) -> None:
    """Record interest in an item on the visitor (and on the customer it belongs to); a ``late``
    event's item goes with the earlier visits', after them (older), not into the visit under way."""
    if late:
        for items, cap in ((v.last_visit_items, LAST_VISIT_ITEMS), (c.recent_items if c else None, CUSTOMER_RECENT)):
            if items is not None and item not in items and item not in v.session_items and len(items) < cap:
                items.append(item)
    else:
        push_recent(v.session_items, item, SESSION_ITEMS)
        if c is not None:
            push_recent(c.recent_items, item, CUSTOMER_RECENT)
    if info is None:
        return
    for profile in (v, c):
        if profile is None:
            continue
        add_weight(profile.category_affinity, info.category, weight, AFFINITIES)
        add_weight(profile.brand_affinity, info.brand, weight, BRANDS)
    price = price_seen if price_seen is not None else info.price
    if price is not None and weight > 0:
        total = v.price_weight + 1.0
        v.price_mean = _cents(((v.price_mean or 0.0) * v.price_weight + price) / total) / 100
        v.price_weight = min(total, 20.0)  # a moving mean: recent views matter more


def apply_event(
    visitor_json: dict[str, Any] | None,
    customer_json: dict[str, Any] | None,
    event: Event,
    lookup: ItemLookup,
    cfg: ProfileConfig,
) -> Applied:
    """The whole behaviour model: stored profiles + one event -> new profiles and counter bumps.

    ``customer_json`` must be the profile of the customer the event concerns (the event's
    customer_id, else the one the visitor is linked to), or None when there is none.
    """
    v = VisitorProfile.from_json(visitor_json)
    c = CustomerProfile.from_json(customer_json) if event.customer_id or v.customer_id else None
    return fold_event(v, c, event, lookup, cfg)


def fold_event(v: VisitorProfile, c: CustomerProfile | None, event: Event, lookup: ItemLookup,
               cfg: ProfileConfig) -> Applied:
    """``apply_event`` on loaded profiles, changing them in place.

    The applier folds a visitor's events in a row without a JSON round trip per event. Scores are
    left rounded as storing would round them, so folding n events in a row gives exactly what n
    separate store-and-load steps give (batching never changes a profile).
    """
    applied = _fold(v, c, event, lookup, cfg)
    for profile in (applied.visitor, applied.customer):
        if profile is not None:
            quantize(profile)
    return applied


def _fold(v: VisitorProfile, c: CustomerProfile | None, event: Event, lookup: ItemLookup,
          cfg: ProfileConfig) -> Applied:
    customer_id = event.customer_id or v.customer_id
    if not customer_id:
        c = None
    elif c is None:
        c = CustomerProfile()
    ts = event.ts
    v = current(v, c)

    if event.gpc or (event.type == "consent" and not event.properties.get("granted")):
        # Withdrawn (or any event the browser sent with Global Privacy Control, whatever it says):
        # the person's behaviour goes, from the cookie and from the customer it is linked to (which
        # holds what all their devices did; the other cookies' own behaviour goes by ``current``).
        # Only the fact stays, with the link, so that a later grant from this cookie lifts it for
        # the customer too.
        v = forget(v, ts, consent=False)
        v.customer_id, v.withdrawn_at = customer_id, event.rt
        if c is not None:
            v.withdrawals += 1
            c = CustomerProfile(last_seen=ts, consent=False, withdrawals=v.withdrawals, withdrawn_at=event.rt)
        return Applied(v, c, customer_id, [])
    if event.type == "consent":
        v.consent = True
        if c is not None:
            c.consent = True
    elif withdrawn(v, c, cfg.consent_required):  # withdrawn here or on another device, or not granted yet
        return Applied(v, None, None, [])

    late = _touch_visit(v, ts, cfg)
    if c is not None and customer_id:
        stitch(event.visitor_id, v, c, customer_id, ts, cfg)
        _touch_customer(c, ts, cfg)
        if event.type == "login":
            for trait in TRAITS:
                value = event.properties.get(trait)
                if isinstance(value, str) and value:
                    c.traits[trait] = value[:64]

    trending: list[tuple[str, float]] = []
    weight = cfg.weight(event.type)
    if late:  # affinities are as of last_seen: an older event adds what is left of it by then
        weight *= 0.5 ** ((v.last_seen - ts) / cfg.affinity_half_life_s)
    etype = event.type
    if etype in ("product_view", "add_to_wishlist"):  # a wish is a stronger view, not a cart line
        item = event.item_id or ""
        _interest(v, c, item, lookup(item), weight, event.price, late)
        trending.append((item, weight))
    elif etype == "page_view":
        category = event.properties.get("category")
        if isinstance(category, str) and category:
            for profile in (v, c):
                if profile is not None:
                    add_weight(profile.category_affinity, category.strip().lower()[:64], PAGE_CATEGORY_WEIGHT,
                               AFFINITIES)
    elif etype == "search":
        query = str(event.properties["query"]).strip().lower()[:64]
        if query:
            push_recent(v.searches, query, SEARCHES)
    elif etype == "add_to_cart":
        for li in event.line_items():
            bump_count(v.cart, li.item_id, li.quantity, CART_ITEMS)
            _interest(v, c, li.item_id, lookup(li.item_id), weight, li.price, late)
            trending.append((li.item_id, weight))
        v.cart_updated = ts
    elif etype == "remove_from_cart":
        for li in event.line_items():
            qty = li.quantity if event.quantity is not None or event.items else v.cart.get(li.item_id, 0)
            bump_count(v.cart, li.item_id, -qty, CART_ITEMS)
        v.cart_updated = ts
    elif etype == "purchase":
        revenue = event.order_revenue()
        for li in event.line_items():
            v.cart.pop(li.item_id, None)
            _interest(v, c, li.item_id, lookup(li.item_id), weight, li.price, late)
            trending.append((li.item_id, weight))
            if c is not None:
                bump_count(c.purchases, li.item_id, li.quantity, CUSTOMER_PURCHASES)
            else:
                bump_count(v.purchases, li.item_id, li.quantity, VISITOR_PURCHASES)
        if c is not None:
            c.orders += 1
            c.revenue = round(c.revenue + revenue, 2)
            c.first_order = min(c.first_order or ts, ts)
            c.last_order = max(c.last_order, ts)
        else:
            v.orders += 1
            v.revenue = round(v.revenue + revenue, 2)
        v.cart_updated = ts
    return Applied(v, c, customer_id, [t for t in trending if t[1] > 0])


def bounced(v: VisitorProfile) -> bool:
    """One visit that showed interest in no item and decided nothing: pages seen, searches at most.
    Should the person come back, all there is to know is that they were here once, so such a
    profile can be kept for less time than the others (``VITRINE_VISITOR_BOUNCE_TTL_S``)."""
    return (v.visits <= 1 and not v.session_items and not v.last_visit_items and not v.cart
            and not v.purchases and not v.orders and v.customer_id is None and v.consent is None
            and not v.withdrawals)


def forget(v: VisitorProfile, ts: float, *, consent: bool | None) -> VisitorProfile:
    """What a cookie keeps once its person withdrew consent: when it was seen, the choice and
    the customer it belongs to; no behaviour."""
    return VisitorProfile(first_seen=v.first_seen or ts, last_seen=max(v.last_seen, ts), consent=consent,
                          customer_id=v.customer_id, withdrawals=v.withdrawals, withdrawn_at=v.withdrawn_at)


def last_withdrawal(v: VisitorProfile, c: CustomerProfile | None) -> float:
    """When the person last withdrew consent, on this cookie or as the customer (0: never). A model
    trained before then still holds what they did before it, even once they grant consent again."""
    return max(v.withdrawn_at, c.withdrawn_at if c is not None else 0.0)


def stale(v: VisitorProfile, c: CustomerProfile | None) -> bool:
    """The customer withdrew consent (on any device) since this cookie's behaviour was recorded."""
    return c is not None and v.withdrawals < c.withdrawals


def current(v: VisitorProfile, c: CustomerProfile | None) -> VisitorProfile:
    """The cookie as it may be used with customer ``c``: a withdrawal on another device forgets
    this cookie's behaviour too, even if the cookie has not been seen since (and so was not
    rewritten), and even once consent is granted again."""
    if c is None or not stale(v, c):
        return v
    forgotten = forget(v, v.last_seen, consent=v.consent)
    forgotten.withdrawals = c.withdrawals
    return forgotten


def withdrawn(v: VisitorProfile, c: CustomerProfile | None, required: bool = False) -> bool:
    """The person withdrew consent, on this cookie or (as a customer) on another device, or consent
    is ``required`` (opt-in) and neither the cookie nor its customer granted it: no personalisation
    from anything stored about them, nothing profiled until they grant it."""
    if v.consent is False or (c is not None and c.consent is False):
        return True
    return required and v.consent is not True and (c is None or c.consent is not True)


def visit_items(v: VisitorProfile, now: float, timeout_s: float) -> tuple[list[str], list[str]]:
    """(items of the visit under way, items of earlier visits) as of ``now``.

    The stored session is only "current" while it is fresh; once it has timed out, its items are
    the last visit's, even before the next event rolls them over.
    """
    if v.in_session(now, timeout_s):
        return v.session_items, v.last_visit_items
    return [], list(dict.fromkeys([*v.session_items, *v.last_visit_items]))


def history_items(v: VisitorProfile, c: CustomerProfile | None, now: float,
                  timeout_s: float) -> Iterable[tuple[str, float, str]]:
    """What a person has shown interest in, strongest signal first: (item, weight, why).

    Items of the visit under way weigh most and fade with their position, so the last clicks steer
    the next page. ``why`` is the verb of the reason code (``viewed``, ``carted``, ``bought``).
    """
    current, earlier = visit_items(v, now, timeout_s)
    for pos, item in enumerate(current):
        yield item, 3.0 * (0.85 ** pos), "viewed"
    for item in v.cart:
        yield item, 3.0, "carted"
    for pos, item in enumerate(earlier):
        yield item, 1.5 * (0.9 ** pos), "viewed"
    for item in v.purchases:
        yield item, 2.0, "bought"
    if c is not None:
        for item in reversed(c.purchases):
            yield item, 2.0, "bought"
        for pos, item in enumerate(c.recent_items):
            yield item, 1.0 * (0.9 ** pos), "viewed"
