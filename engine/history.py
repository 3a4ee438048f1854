"""The durable event history as training rows for models/."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.eventlog import read_raw
from models.interactions import Interaction

TRAINABLE = frozenset({"product_view", "add_to_cart", "add_to_wishlist", "purchase", "recommendation_click"})


def interactions(events: Iterable[dict[str, Any]]) -> Iterator[Interaction]:
    """Each logged event once (the log may hold a retried event twice), one row per item."""
    seen: set[str] = set()
    for e in events:
        if e.get("type") not in TRAINABLE or e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        basket = e["event_id"] if e["type"] == "purchase" else None
        lines = e.get("items") or [{"item_id": e.get("item_id"), "quantity": e.get("quantity") or 1}]
        for line in lines:
            if line.get("item_id"):
                yield Interaction(e["ts"], e["visitor_id"], e.get("customer_id"), e["type"],
                                  line["item_id"], int(line.get("quantity") or 1), basket)


def interactions_from_log(log_dir: Path) -> Iterator[Interaction]:
    return interactions(read_raw(log_dir))
