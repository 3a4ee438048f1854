"""What a kind decides on the apply path, and what it is shown: the types every kind module uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events.schema import Event
from engine.profiles.shapes import CustomerProfile, VisitorProfile


@dataclass(frozen=True)
class Seen:
    """An applied event and the person right after it (``engine.ingest.apply`` builds it)."""

    event: Event
    visitor: VisitorProfile
    customer: CustomerProfile | None
    customer_id: str | None
    new_customer: bool  # this event made the customer known (first identified visit)
    lookup: Callable[[str], Any]  # item id -> ItemInfo | None
    shop_model: Callable[[], Any] = lambda: None  # models.customer_value.ShopModel | None, read when needed


@dataclass(frozen=True)
class Arm:
    """Schedule (or move) the person's occurrence to ``due``; ``data`` travels with it."""

    due: float
    data: dict[str, Any] = field(default_factory=dict)
    once: bool = False  # at most one occurrence per person, ever (welcome)


@dataclass(frozen=True)
class Moved:
    """The person's ``value`` for this trigger is recorded; the occurrence is armed (due ``due``)
    only when the value recorded before was one of ``fires_from`` (a change worth a message)."""

    value: str
    fires_from: tuple[str, ...]
    due: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Noted:
    """The person viewed (or carted) an item: counted in the item's behaviour watchers
    (``engine.profiles.viewers``), for a price drop to reach them."""

    item_id: str
    carted: bool


@dataclass(frozen=True)
class Cancel:
    pass


CANCEL = Cancel()
