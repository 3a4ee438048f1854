"""Price drop: a watched item's price fell by at least ``min_drop``; a person with a price alert on
it is reached only when the new price is at or below the alert's threshold."""

from __future__ import annotations

from typing import Any

from engine.catalog import Item
from engine.merch.blocks import Person
from engine.merch.schema import PriceDrop

SCOPE = "watcher"
EVENTS: frozenset[str] = frozenset()


def on_item_changed(trigger: PriceDrop, old: Item | None, new: Item) -> dict[str, Any] | None:
    if old is None or old.price is None or new.price is None or old.price <= 0:
        return None
    if new.price > old.price * (1 - trigger.min_drop):
        return None
    return {"old_price": old.price, "price": new.price}


def reaches(trigger: PriceDrop, data: dict[str, Any], below: float | None) -> bool:
    """A watcher's own alert (``below``) is the threshold they asked for."""
    return below is None or data["price"] <= below


def still_due(trigger: PriceDrop, person: Person, data: dict[str, Any]) -> bool:
    return True
