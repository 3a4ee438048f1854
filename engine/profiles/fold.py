"""How one event changes the profiles, purely: ``apply_event`` takes the stored profiles and an event
and returns the new profiles, so the same code runs in the API process, in a faust worker and in a
replay, and can be tested without Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.catalog import ItemInfo, ItemLookup
from engine.events.schema import Event
from engine.profiles.codec import _cents, quantize
from engine.profiles.consent import channel_choice, current, forget, grants, withdrawn, withdraws
from engine.profiles.shapes import (AFFINITIES, BRANDS, CUSTOMER_PURCHASES, CUSTOMER_RECENT, CUSTOMER_VISITORS,
                                    LAST_VISIT_ITEMS, PAGE_CATEGORY_WEIGHT, SEARCHES, SESSION_ITEMS, CART_ITEMS,
                                    TRAITS, VISITOR_PURCHASES, WATCHING, CustomerProfile, ProfileConfig, VisitorProfile)


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
    for item in reversed(v.watching):  # the cookie's wishes become the customer's watches
        push_recent(c.watching, item, WATCHING)
    v.watching = []
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

    if withdraws(event):
        # Withdrawn: the person's behaviour goes, from the cookie and from the customer it is linked to (which
        # holds what all their devices did; the other cookies' own behaviour goes by ``current``).
        # Only the fact stays, with the link, so that a later grant from this cookie lifts it for
        # the customer too.
        v = forget(v, ts, consent=False)
        v.customer_id, v.withdrawn_at = customer_id, event.rt
        if c is not None:
            v.withdrawals += 1
            c = CustomerProfile(last_seen=ts, consent=False, withdrawals=v.withdrawals, withdrawn_at=event.rt,
                                channels=c.channels)
        return Applied(v, c, customer_id, [])
    if (choice := channel_choice(event)) is not None:
        # A choice about being contacted is a record to keep, whatever the profiling state: only
        # the choice is stored, nothing is profiled from it.
        channel, granted = choice
        for profile in (v, c):
            if profile is not None:
                profile.channels[channel] = granted
        return Applied(v, c, customer_id, [])
    if grants(event):
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
                if isinstance(value, int) and not isinstance(value, bool):
                    value = str(value)
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
        if etype == "add_to_wishlist":  # a watch: price drops and back in stock (engine.profiles.preferences)
            push_recent(c.watching if c is not None else v.watching, item, WATCHING)
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
            and not v.withdrawals and not v.channels)
