"""Welcome: the first event that names the customer, once per trigger and customer ever."""

from __future__ import annotations

from typing import Any

from engine.merch.blocks import Person
from engine.merch.schema import Welcome
from engine.triggers.decisions import Arm, Cancel, Seen

SCOPE = "customer"
EVENTS = frozenset({"login", "page_view", "product_view", "add_to_cart", "purchase", "search"})


def on_event(trigger: Welcome, seen: Seen) -> Arm | Cancel | None:
    return Arm(seen.event.ts + trigger.after_s, once=True) if seen.new_customer else None


def still_due(trigger: Welcome, person: Person, data: dict[str, Any]) -> bool:
    return person.customer_id is not None
