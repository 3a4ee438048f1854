"""Real-time segments, evaluated from a profile on read (nothing is stored or batch-computed).

Thresholds are deliberately simple and documented so a CRM team can predict membership.
"""

from __future__ import annotations

from engine.profiles.shapes import CustomerProfile, VisitorProfile

DAY = 86400.0
LOYAL_ORDERS = 3
HIGH_VALUE_REVENUE = 500.0
AT_RISK_DAYS = 90
CART_ABANDON_S = 3600


def segments(visitor: VisitorProfile, customer: CustomerProfile | None, now: float) -> list[str]:
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
