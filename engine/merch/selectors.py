"""Does an item match a rules-file selector? One pure predicate, used by every rule that names a
set of items (filters, boosts, buries, promoted sets), so they all mean the same thing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.profiles.affinity import in_category
from engine.catalog import Item
from engine.merch.schema import Selector


def matches(selector: Selector, item: Item | None, now: float) -> bool:
    """True when every condition of ``selector`` holds for ``item``; an unknown item matches only
    a selector without conditions on attributes."""
    s = selector
    if s.items is not None and (item is None or item.item_id not in s.items):
        return False
    if item is None:
        return (s.category_in is None and s.brand_in is None and s.price is None and s.in_stock is None
                and s.attributes is None and s.new_arrivals is None)
    if s.category_in is not None and not in_category(item.category, s.category_in):
        return False
    if s.category_not_in is not None and in_category(item.category, s.category_not_in):
        return False
    if s.brand_in is not None and item.brand not in s.brand_in:
        return False
    if s.brand_not_in is not None and item.brand in s.brand_not_in:
        return False
    if s.price is not None:
        if item.price is None:
            return False
        if (s.price.min is not None and item.price < s.price.min) or (
                s.price.max is not None and item.price > s.price.max):
            return False
    if s.in_stock is not None and item.in_stock != s.in_stock:
        return False
    if s.new_arrivals is not None:
        window = s.new_arrivals_s or 0
        if item.added_at is None or item.added_at < now - window:
            return False
    if s.attributes:
        for name, wanted in s.attributes.items():
            value = item.attributes.get(name)
            options = wanted if isinstance(wanted, list) else [wanted]
            if not any(_same(value, w) for w in options):
                return False
    return True


def _same(a: object, b: object) -> bool:
    """Equal, without Python's ``True == 1``: an attribute ``new: true`` must not match ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


@dataclass(frozen=True)
class ItemSet:
    """The AND of some selectors, with the answer precomputed for the model's items.

    Computed once per (rules, model, catalogue) version; per request only the time-dependent
    conditions (``new_arrivals``) and items the model does not know are checked item by item.
    """

    selectors: tuple[Selector, ...]
    index: Mapping[str, int] | None = None
    static: Sequence[bool] | None = None
    dynamic: tuple[Selector, ...] = ()

    def contains(self, item_id: str, item: Item | None, now: float) -> bool:
        if self.static is not None and self.index is not None:
            i = self.index.get(item_id)
            if i is not None:
                return self.static[i] and all(matches(s, item, now) for s in self.dynamic)
        return all(matches(s, item, now) for s in self.selectors)


def item_set(selectors: Sequence[Selector], item_ids: Sequence[str], index: Mapping[str, int],
             items: Mapping[str, Item], now: float) -> ItemSet:
    static = [s for s in selectors if s.new_arrivals is None]
    dynamic = tuple(s for s in selectors if s.new_arrivals is not None)
    answers = [all(matches(s, items.get(i), now) for s in static) for i in item_ids]
    return ItemSet(tuple(selectors), index, answers, dynamic)
