"""One row of interaction history, and whose it is: the shape every model reads."""

from __future__ import annotations

from typing import NamedTuple


class Interaction(NamedTuple):
    ts: float
    visitor_id: str
    customer_id: str | None
    event_type: str
    item_id: str
    quantity: int = 1
    basket: str | None = None  # the order (event id) a purchased line belongs to


def user_key(visitor_id: str, customer_id: str | None) -> str:
    return f"c:{customer_id}" if customer_id else f"v:{visitor_id}"
