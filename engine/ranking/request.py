"""What a page asks for, what the request path read to answer it, and what every candidate source
returns: an item, its score and the reason it is there."""

from __future__ import annotations

from typing import NamedTuple

from engine.profiles.store import Loaded
from engine.ranking.filters import ItemFilter


class RecoRequest(NamedTuple):
    placement: str
    visitor_id: str | None = None
    customer_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    n: int = 10
    filter: ItemFilter | None = None  # only items matching it (engine.ranking.filters)
    exclude: frozenset[str] = frozenset()  # items shown on the list's earlier pages (engine.paging)


class Read(NamedTuple):
    profiles: Loaded
    trending: list[tuple[str, float]]
    degraded: bool


class Pick(NamedTuple):  # a tuple, not a dataclass: tens of them are made per request
    item_id: str
    score: float
    reason: str
