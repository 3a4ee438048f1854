"""Value and churn scores of one customer, computed on read from the four numbers the customer
profile already keeps (first and last order, orders, revenue): no extra state per customer.

The shop-level parameters (``ShopModel``) are fitted by ``vitrine train`` (``models.customer_value``)
and stored next to the recommendation model. The model is a sign-constrained logistic regression
for "buys again within the horizon" plus two log-linear models for orders and spend given a
purchase, on five features; the signs make every score fall as time passes without a purchase and
rise after one, whatever the shop's data, so the explanation never says something absurd.
``vitrine evaluate-customers`` measures it against recency, RFM and BG/NBD on a time split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.profiles.shapes import CustomerProfile
from models import customer_value
from models.customer_value import DAY, HINGE, PRIOR_GAPS, ShopModel


@dataclass(frozen=True)
class History:
    """What the scores read of a customer (``CustomerProfile`` keeps these four numbers)."""

    first_order: float  # unix seconds
    last_order: float
    orders: int
    revenue: float


@dataclass(frozen=True)
class Scores:
    p_buy: float  # probability of at least one order within the horizon
    expected_orders: float
    expected_revenue: float  # customer value over the horizon
    churn_risk: str  # "high", "medium" or "low"


def usual_gap(o: History, g0: float) -> float:
    """The customer's own mean gap in days, shrunk towards the shop's typical gap (one order: g0)."""
    span = (o.last_order - o.first_order) / DAY
    return max((span + PRIOR_GAPS * g0) / (o.orders - 1 + PRIOR_GAPS), 1.0)


def features(o: History, now: float, g0: float) -> tuple[float, float, float, float, float]:
    """overdue: how far recency is past 1.5x the usual gap (log scale, 0 before); times log orders:
    a frequent buyer who goes quiet is more likely gone (the BG/NBD dropout idea)."""
    rec = max(now - o.last_order, 0.0) / DAY
    ten = max(now - o.first_order, 0.0) / DAY
    ratio = rec / usual_gap(o, g0)
    hinge = math.log(ratio) - HINGE if ratio > 1.5 else 0.0
    lo = math.log(o.orders)
    return (hinge, hinge * lo, lo, math.log1p(o.revenue / o.orders), math.log1p(ten))


def _dot(w: tuple[float, ...], x: tuple[float, ...]) -> float:
    return sum(a * b for a, b in zip(w, x))


def score(m: ShopModel, o: History, now: float) -> Scores | None:
    """None before a first order: the scores are about customers who bought."""
    if o.orders < 1:
        return None
    x = features(o, now, m.typical_gap_days)
    z = m.buy_b + _dot(m.buy_w, x)
    prob = 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0
    band = "high" if prob < m.bands[0] else "medium" if prob < m.bands[1] else "low"
    orders = prob * max(math.exp(m.orders_b + _dot(m.orders_w, x)), 1.0)
    revenue = prob * math.exp(m.spend_b + _dot(m.spend_w, x))
    return Scores(prob, orders, revenue, band)


def explain(m: ShopModel, o: History, now: float) -> list[dict[str, Any]]:
    """Readable reasons, largest first: each term's log-odds against the shop's average customer
    (terms under 0.05 left out; the two recency terms reported as one)."""
    if o.orders < 1:
        return []
    x = features(o, now, m.typical_gap_days)
    c = [w * (xi - mu) for w, xi, mu in zip(m.buy_w, x, m.means)]
    rec = max(now - o.last_order, 0.0) / DAY
    gap = usual_gap(o, m.typical_gap_days)
    if o.orders > 1:
        recency = f"last order {rec:.0f} d ago, {rec / gap:.1f}x their usual gap of {gap:.0f} d"
    else:
        recency = f"a single order, {rec:.0f} d ago ({rec / gap:.1f}x the shop's usual gap of {gap:.0f} d)"
    rows = [("recency", c[0] + c[1], recency),
            ("frequency", c[2], f"{o.orders} orders"),
            ("basket", c[3], f"average basket {o.revenue / o.orders:.0f}"),
            ("tenure", c[4], f"customer for {(now - o.first_order) / DAY:.0f} d")]
    rows = sorted((r for r in rows if abs(r[1]) >= 0.05), key=lambda r: -abs(r[1]))
    return [{"factor": f, "effect": "lowers risk" if v > 0 else "raises risk", "log_odds": round(v, 2), "detail": t}
            for f, v, t in rows]


def scorer(models_dir: Path) -> Callable[[CustomerProfile, float], Scores | None]:
    """A customer profile's scores with the shop model ``vitrine train`` last saved (None before
    one, or before a first order): what segments on churn risk or value read."""
    def of(c: CustomerProfile, now: float) -> Scores | None:
        model = customer_value.load(models_dir)
        return score(model, History(c.first_order, c.last_order, c.orders, c.revenue), now) if model else None
    return of
