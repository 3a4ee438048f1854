"""Price drop: a watched item's price fell by at least ``min_drop``; a person with a price alert on
it is reached only when the new price is at or below the alert's threshold. With ``min_views`` or
``carted``, the people who viewed the item that many times or carted it lately are reached too:
their product views and cart adds are counted on the apply path (``Noted``) while such a trigger
is defined."""

from __future__ import annotations

from typing import Any

from engine.catalog import Item
from engine.merch.blocks import Person
from engine.merch.schema import PriceDrop
from engine.profiles.preferences import Watcher
from engine.triggers.decisions import Noted, Seen

SCOPE = "watcher"
EVENTS = frozenset({"product_view", "add_to_cart"})


def on_event(trigger: PriceDrop, seen: Seen) -> Noted | None:
    event = seen.event
    if not event.item_id:
        return None
    if event.type == "product_view" and trigger.min_views is not None:
        return Noted(event.item_id, carted=False)
    if event.type == "add_to_cart" and trigger.carted:
        return Noted(event.item_id, carted=True)
    return None


def on_item_changed(trigger: PriceDrop, old: Item | None, new: Item) -> dict[str, Any] | None:
    if old is None or old.price is None or new.price is None or old.price <= 0:
        return None
    if new.price > old.price * (1 - trigger.min_drop):
        return None
    return {"old_price": old.price, "price": new.price}


def reaches(trigger: PriceDrop, data: dict[str, Any], watcher: Watcher) -> bool:
    """A watcher's own alert (``below``) is the threshold they asked for; someone who only viewed or
    carted the item is reached when the trigger asks for that."""
    if watcher.asked:
        return watcher.below is None or data["price"] <= watcher.below
    return ((trigger.min_views is not None and watcher.views >= trigger.min_views)
            or (trigger.carted and watcher.carts > 0))


def still_due(trigger: PriceDrop, person: Person, data: dict[str, Any]) -> bool:
    return True
