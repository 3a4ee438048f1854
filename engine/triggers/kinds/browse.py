"""Browse abandoned: armed by the view that makes ``min_views`` distinct items of one category in
the visit, moved by each further view, cancelled by a cart change or a purchase."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.merch.blocks import Person
from engine.merch.schema import BrowseAbandoned
from engine.triggers.decisions import CANCEL, Arm, Cancel, Seen

SCOPE = "visitor"
EVENTS = frozenset({"product_view", "add_to_cart", "purchase"})


def top_category(trigger: BrowseAbandoned, items: list[str], lookup: Callable[[str], Any]) -> tuple[str, int] | None:
    counts: Counter[str] = Counter()
    for item_id in items:
        info = lookup(item_id)
        if info is not None and info.category:
            cat = info.category if trigger.depth is None else ".".join(info.category.split(".")[:trigger.depth])
            counts[cat] += 1
    return counts.most_common(1)[0] if counts else None


def on_event(trigger: BrowseAbandoned, seen: Seen) -> Arm | Cancel | None:
    if seen.event.type != "product_view" or seen.visitor.cart:
        return CANCEL
    top = top_category(trigger, seen.visitor.session_items, seen.lookup)
    if top is None or top[1] < trigger.min_views:
        return None
    return Arm(seen.event.ts + trigger.after_s, {"category": top[0]})


def still_due(trigger: BrowseAbandoned, person: Person, data: dict[str, Any]) -> bool:
    return not person.visitor.cart
