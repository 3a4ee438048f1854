"""Churn risk: a customer's churn band (``engine.customers.scores``) reaches ``band``.

The band only moves with time since the last order (the scores fall monotonically without a
purchase), so on each purchase the moment it will cross is computed once and scheduled; the next
purchase moves it. Without a fitted shop model (``vitrine train``) nothing is scheduled.
"""

from __future__ import annotations

from typing import Any

from engine.customers.scores import History, score
from engine.merch.blocks import Person
from engine.merch.schema import ChurnRisk
from engine.profiles.shapes import CustomerProfile
from engine.triggers.decisions import CANCEL, Arm, Cancel, Seen

SCOPE = "customer"
EVENTS = frozenset({"purchase"})
RANK = {"low": 0, "medium": 1, "high": 2}
HORIZON_S = 3 * 365 * 86400  # a band not reached within this is not scheduled
STEP_S = 3600.0


def history(customer: CustomerProfile) -> History:
    return History(customer.first_order, customer.last_order, customer.orders, customer.revenue)


def crossing(model: Any, h: History, band: str, start: float) -> float | None:
    """The first time (to the hour) the band is at least ``band``: a bisection, the band being
    monotonic in time since the last order."""
    def reached(t: float) -> bool:
        s = score(model, h, t)
        return s is not None and RANK[s.churn_risk] >= RANK[band]

    lo, hi = start, start + HORIZON_S
    if reached(lo):
        return lo
    if not reached(hi):
        return None
    while hi - lo > STEP_S:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if reached(mid) else (mid, hi)
    return hi


def on_event(trigger: ChurnRisk, seen: Seen) -> Arm | Cancel | None:
    model = seen.shop_model()
    if seen.customer is None:
        return None
    if model is None or seen.customer.orders < 1:
        return CANCEL
    due = crossing(model, history(seen.customer), trigger.band, seen.event.ts)
    return CANCEL if due is None else Arm(due, {"band": trigger.band})


def still_due(trigger: ChurnRisk, person: Person, data: dict[str, Any]) -> bool:
    return person.customer is not None and person.customer.orders > 0
