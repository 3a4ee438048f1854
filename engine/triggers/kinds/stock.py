"""Back in stock: a watched item went from out of stock to in stock."""

from __future__ import annotations

from typing import Any

from engine.catalog import Item
from engine.merch.blocks import Person
from engine.merch.schema import BackInStock
from engine.profiles.preferences import Watcher

SCOPE = "watcher"
EVENTS: frozenset[str] = frozenset()


def on_item_changed(trigger: BackInStock, old: Item | None, new: Item) -> dict[str, Any] | None:
    return {} if old is not None and not old.in_stock and new.in_stock else None


def reaches(trigger: BackInStock, data: dict[str, Any], watcher: Watcher) -> bool:
    return watcher.asked  # not who only viewed or carted it


def still_due(trigger: BackInStock, person: Person, data: dict[str, Any]) -> bool:
    return True
