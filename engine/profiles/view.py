"""A profile as people read it (admin API): full names, ISO dates, scores decayed to now."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from engine.profiles.affinity import relative
from engine.catalog import ItemLookup
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.visits import visit_items

DAY = 86400.0


def iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z") if ts else None


def _affinity(values: dict[str, float]) -> dict[str, float]:
    """Relative to the strongest (1.0): decay scales all of a profile's scores alike, so the
    ratios are what ranking and eligibility rules use."""
    return {k: round(v, 3) for k, v in sorted(relative(values).items(), key=lambda kv: -kv[1])}


def _categories(items: list[str], lookup: ItemLookup) -> dict[str, int]:
    """Categories of the visit's items, most viewed first (derived, not stored: memory)."""
    found = Counter(info.category for item in items if (info := lookup(item)) is not None and info.category)
    return dict(found.most_common())


def describe(visitor_id: str, v: VisitorProfile, customer_id: str | None, c: CustomerProfile | None,
             now: float, session_timeout_s: float, lookup: ItemLookup,
             declared: dict[str, Any] | None = None, *, segments: list[str]) -> dict[str, Any]:
    """``declared``: the person's declared preferences as people read them
    (engine.profiles.preferences); ``segments``: the person's, from the shop's definitions
    (``engine.merch.segments.members``)."""
    current, earlier = visit_items(v, now, session_timeout_s)
    live = v.in_session(now, session_timeout_s)
    out: dict[str, Any] = {
        "visitor_id": visitor_id,
        "segments": segments,
        "visitor": {
            "first_seen": iso(v.first_seen),
            "last_seen": iso(v.last_seen),
            "visits": v.visits,
            "in_session": live,
            "session": {
                "started": iso(v.session_start) if live else None,
                "items": current,
                "categories": _categories(current, lookup) if live else {},
                "searches": v.searches if live else [],
            },
            "last_visit_items": earlier,
            "cart": v.cart,
            "cart_updated": iso(v.cart_updated),
            "category_affinity": _affinity(v.category_affinity),
            "brand_affinity": _affinity(v.brand_affinity),
            "mean_price_viewed": v.price_mean,
            "purchases_before_login": v.purchases,
            "orders_before_login": v.orders,
            "revenue_before_login": v.revenue,
            "consent": v.consent,
            "contact_consent": v.channels,
            "wishlist": v.watching,
        },
        "customer_id": customer_id,
        "declared_preferences": declared,
    }
    if c is not None:
        out["customer"] = {
            "first_seen": iso(c.first_seen),
            "last_seen": iso(c.last_seen),
            "orders": c.orders,
            "revenue": c.revenue,
            "first_order": iso(c.first_order),
            "last_order": iso(c.last_order),
            "rfm": {
                "recency_days": round((now - c.last_order) / DAY, 1) if c.last_order else None,
                "frequency": c.orders,
                "monetary": c.revenue,
            },
            "purchases": dict(reversed(list(c.purchases.items()))),
            "recent_items": c.recent_items,
            "category_affinity": _affinity(c.category_affinity),
            "brand_affinity": _affinity(c.brand_affinity),
            "devices": c.visitors,
            "traits": c.traits,
            "consent": c.consent,
            "contact_consent": c.channels,
            "wishlist": c.watching,
        }
    return out
