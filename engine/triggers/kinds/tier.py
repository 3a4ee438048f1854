"""Value tier: a customer's tier changed, up or down, or from and to named tiers.

The tier is read after a purchase (expected-revenue ``bands``: the scores move with an order) or a
login (the shop's ``tier`` trait, sent as a login property). The tier seen last is recorded per
trigger and customer (``engine.store.keys.trigger_tiers``) and compared in Redis, atomically with
arming: each change fires once, a repeat of the same tier nothing. A customer's first recorded tier
is not a change. A fall of expected revenue with time alone is the ``churn_risk`` kind's concern.
"""

from __future__ import annotations

from typing import Any

from engine.customers.scores import score
from engine.merch.blocks import Person
from engine.merch.schema import ValueTier
from engine.triggers.decisions import Arm, Cancel, Moved, Seen
from engine.triggers.kinds.churn import history

SCOPE = "customer"
EVENTS = frozenset({"purchase", "login"})
NONE = "-"  # below the lowest band, or a trait value the trigger does not list


def tier_of(trigger: ValueTier, seen: Seen) -> str | None:
    """The customer's tier now; None when it cannot be known (no shop model, no order yet)."""
    customer = seen.customer
    if customer is None:
        return None
    if trigger.tiers is not None:
        value = customer.traits.get("tier")
        return value if value in trigger.tiers else NONE
    if seen.event.type != "purchase":
        return None
    model = seen.shop_model()
    scores = score(model, history(customer), seen.event.ts) if model is not None else None
    if scores is None:
        return None
    reached = [name for name in trigger.ranked() if trigger.bands and scores.expected_revenue >= trigger.bands[name]]
    return reached[-1] if reached else NONE


def fires_from(trigger: ValueTier, new: str) -> tuple[str, ...]:
    """The previous tiers from which reaching ``new`` fires this trigger."""
    if trigger.to is not None and new not in trigger.to:
        return ()
    rank = {name: i for i, name in enumerate([NONE, *trigger.ranked()])}
    olds = [t for t in rank if t != new and (trigger.from_ is None or t in trigger.from_)]
    if trigger.direction == "up":
        olds = [t for t in olds if rank[t] < rank[new]]
    elif trigger.direction == "down":
        olds = [t for t in olds if rank[t] > rank[new]]
    return tuple(olds)


def on_event(trigger: ValueTier, seen: Seen) -> Arm | Cancel | Moved | None:
    tier = tier_of(trigger, seen)
    if tier is None:
        return None
    return Moved(tier, fires_from(trigger, tier), seen.event.ts, {"tier": tier})


def still_due(trigger: ValueTier, person: Person, data: dict[str, Any]) -> bool:
    return person.customer is not None
