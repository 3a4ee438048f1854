"""Item details carried in a recommendation answer (``fields=title,price``), so that a page can
draw a strip from one response instead of one ``GET /v1/items/{id}`` per item."""

from __future__ import annotations

from typing import Any

from engine.catalog import Item

FIELDS = ("title", "price", "category", "brand", "in_stock", "attributes")


def unknown_fields(fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if f not in FIELDS]


def with_details(body: dict[str, Any], items: dict[str, Item], fields: tuple[str, ...]) -> dict[str, Any]:
    """``body`` (a recommendations answer; not changed) with each item's ``details`` (the asked
    fields it has), and ``reason_title``: the title of the item its reason names (``similar_to:X``)."""
    out = []
    for entry in body["items"]:
        item = items.get(entry["item_id"])
        extra: dict[str, Any] = {"details": {} if item is None else {
            f: getattr(item, f) for f in fields if getattr(item, f) not in (None, {})}}
        _, _, ref = entry.get("reason", "").partition(":")
        named = items.get(ref) if ref else None
        if named is not None and named.title:
            extra["reason_title"] = named.title
        out.append({**entry, **extra})
    return {**body, "items": out}
