"""The catalogue: admin bulk upsert / delete, and a public read of one item."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from api.auth import require_admin, require_site
from api.query import json_body, require_json
from api.responses import ApiError, json_response
from engine.catalog import Item, delete_items, upsert_items
from engine.events import ID_PATTERN
from engine.field_path import field_errors

router = APIRouter()
MAX_ITEMS = 10_000


def _list_field(body: bytes, name: str) -> list[Any]:
    payload = json_body(body, f"{{\"{name}\": [...]}}")
    if not isinstance(payload, dict) or not isinstance(payload.get(name), list):
        raise ApiError(422, f"send {{\"{name}\": [...]}}", [{"field": name, "message": "must be a list"}])
    values = payload[name]
    if len(values) > MAX_ITEMS:
        raise ApiError(413, f"at most {MAX_ITEMS} per request", [{"field": name, "message": "too many"}])
    return values


def _validate(raw_items: list[Any]) -> tuple[list[Item], list[dict[str, str]]]:
    items: list[Item] = []
    errors: list[dict[str, str]] = []
    for index, raw in enumerate(raw_items):
        try:
            items.append(Item.model_validate(raw))
        except ValidationError as exc:
            errors += field_errors(exc, prefix=f"items[{index}]")
    return items, errors


@router.put("/v1/items", dependencies=[Depends(require_admin)])
async def put_items(request: Request) -> Response:
    """Upsert items: a stored item changes only in the fields sent (``engine.catalog.merged``).
    Atomic: one invalid item rejects the request (a half-applied catalogue change is worse for a
    merchandiser than a clear error to fix)."""
    require_json(request)
    raw_items = _list_field(await request.body(), "items")
    items, errors = await asyncio.to_thread(_validate, raw_items)  # 10k items: ~50 ms, off the loop
    if errors:
        raise ApiError(422, f"{len(errors)} invalid field(s); nothing was stored", errors)
    engine = request.app.state.engine
    count = await upsert_items(engine.redis, items)
    await engine.catalogue.refresh()
    return json_response({"upserted": count, "catalogue_version": engine.catalogue.current.version})


@router.delete("/v1/items", dependencies=[Depends(require_admin)])
async def remove_items(request: Request) -> Response:
    require_json(request)
    ids = _list_field(await request.body(), "item_ids")
    bad = [i for i, v in enumerate(ids) if not isinstance(v, str) or not v]
    if bad:
        raise ApiError(422, "item_ids must be non-empty strings",
                       [{"field": f"item_ids[{i}]", "message": "must be a non-empty string"} for i in bad])
    engine = request.app.state.engine
    count = await delete_items(engine.redis, ids)
    await engine.catalogue.refresh()
    return json_response({"deleted": count, "catalogue_version": engine.catalogue.current.version})


@router.get("/v1/items/{item_id}")
async def get_item(request: Request, item_id: str) -> Response:
    await require_site(request)  # inline like the other hot site routes (see api.query)
    if not re.match(ID_PATTERN, item_id):
        raise ApiError(422, "invalid item id", [{"field": "item_id", "message": "invalid characters"}])
    item = request.app.state.engine.catalogue.current.items.get(item_id)
    if item is None:
        raise ApiError(404, f"no item {item_id!r} in the catalogue")
    return json_response(item.model_dump(exclude_none=True))
