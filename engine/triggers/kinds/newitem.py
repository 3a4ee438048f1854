"""New item: an item new to the catalogue, in stock, reaches the people whose declared favourite
categories (at or above its category) or brands match it, through the declared-interest index
(``engine.profiles.interests``; fanned out by ``engine.triggers.catalogue``)."""

from __future__ import annotations

from typing import Any

from engine.catalog import Item
from engine.merch.blocks import Person
from engine.merch.schema import NewItem
from engine.profiles.preferences import Watcher

SCOPE = "watcher"
EVENTS: frozenset[str] = frozenset()
INDEX = "interests"


def on_item_changed(trigger: NewItem, old: Item | None, new: Item) -> dict[str, Any] | None:
    if old is not None or not new.in_stock:
        return None
    return {"category": new.category, "brand": new.brand, "price": new.price}


def reaches(trigger: NewItem, data: dict[str, Any], watcher: Watcher) -> bool:
    return True


def still_due(trigger: NewItem, person: Person, data: dict[str, Any]) -> bool:
    return True
