"""Cart abandoned: every cart change moves the due time to ``after`` it; a purchase or an emptied
cart cancels."""

from __future__ import annotations

from typing import Any

from engine.merch.blocks import Person
from engine.merch.schema import CartAbandoned
from engine.triggers.decisions import CANCEL, Arm, Cancel, Seen

SCOPE = "visitor"
EVENTS = frozenset({"add_to_cart", "remove_from_cart", "purchase"})


def on_event(trigger: CartAbandoned, seen: Seen) -> Arm | Cancel | None:
    if seen.event.type == "purchase" or not seen.visitor.cart:
        return CANCEL
    return Arm(seen.event.ts + trigger.after_s, {"cart_items": sum(seen.visitor.cart.values())})


def still_due(trigger: CartAbandoned, person: Person, data: dict[str, Any]) -> bool:
    return bool(person.visitor.cart)
