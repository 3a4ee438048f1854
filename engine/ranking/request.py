"""What a page asks for, and what the request path read to answer it."""

from __future__ import annotations

from typing import NamedTuple

from engine.profiles.store import Loaded


class RecoRequest(NamedTuple):
    placement: str
    visitor_id: str | None = None
    customer_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    n: int = 10


class Read(NamedTuple):
    profiles: Loaded
    trending: list[tuple[str, float]]
    degraded: bool
