"""The catalogue: admin bulk upsert / delete, and a public read of one item."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask

from api.auth import require_admin, require_site
from api.openapi import doc, ok, path_parameter, request_body
from api.query import json_body, require_json
from api.responses import ApiError, json_response
from engine.catalog import Item, delete_items, upsert_changes
from engine.events.schema import ID_PATTERN
from engine.events.fields import field_errors

router = APIRouter()
MAX_ITEMS = 10_000


def _list_field(body: bytes, name: str) -> list[Any]:
    payload = json_body(body, f"{{\"{name}\": [...]}}")
    if not isinstance(payload, dict) or not isinstance(payload.get(name), list):
        raise ApiError(422, f"send {{\"{name}\": [...]}}", [{"field": name, "message": "must be a list"}])
    extra = sorted(set(payload) - {name})
    if extra:
        raise ApiError(422, f"send only {{\"{name}\": [...]}}", [{"field": key, "message": "unknown field"}
                                                              for key in extra])
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


class ItemsUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(max_length=MAX_ITEMS)


class ItemsDelete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_ids: list[Annotated[str, Field(min_length=1)]] = Field(max_length=MAX_ITEMS)


class Upserted(BaseModel):
    upserted: int
    catalogue_version: int


class Deleted(BaseModel):
    deleted: int = Field(description="How many of the ids were in the catalogue.")
    catalogue_version: int


_ITEM = {"item_id": "SKU-1001", "title": "Enamel mug", "category": "home.kitchen.mugs", "brand": "Vitrine",
         "price": 8.5, "in_stock": True, "attributes": {"colour": "white"}}
_WRITE_ERRORS = {413: f"The body is larger than `VITRINE_MAX_BODY_BYTES`, or lists more than {MAX_ITEMS}.",
                503: "Redis is unavailable: nothing was changed, retry."}


@router.put("/v1/items", dependencies=[Depends(require_admin)], **doc(
    "admin", "Add catalogue items, or change stored ones in the fields sent", {
        200: ok(Upserted, "All items stored; API processes pick the new catalogue version up at once. "
                "A changed item's price drop or return to stock fires its triggers for the item's "
                "watchers after the answer."),
        422: "An item is invalid (`errors` names each field, `items[3].price`): nothing was stored.",
        **_WRITE_ERRORS,
    }, body=request_body(ItemsUpsert, {"one item": {"items": [_ITEM]}})))
async def put_items(request: Request) -> Response:
    """Upsert items: a stored item changes only in the fields sent (``engine.catalog.merged``).
    Atomic: one invalid item rejects the request (a half-applied catalogue change is worse for a
    merchandiser than a clear error to fix)."""
    require_json(request)
    raw_items = _list_field(await request.body(), "items")
    items, errors = await asyncio.to_thread(_validate, raw_items)  # a big batch takes long: off the loop
    if errors:
        raise ApiError(422, f"{len(errors)} invalid field(s); nothing was stored", errors)
    engine = request.app.state.engine
    # The changes are recorded with the items (crash-safe); fanning them out to the watchers reads
    # Redis per item: after the answer (and by the trigger runners, should this process die first).
    count, changes = await upsert_changes(engine.redis, items, record=engine.catalogue_changes.record)
    await engine.catalogue.refresh()
    response = json_response({"upserted": count, "catalogue_version": engine.catalogue.current.version})
    if changes:
        response.background = BackgroundTask(engine.catalogue_changes.run_all)
    return response


@router.delete("/v1/items", dependencies=[Depends(require_admin)], **doc(
    "admin", "Delete catalogue items", {
        200: ok(Deleted, "The ids are no longer in the catalogue."),
        422: "`item_ids` is not a list of non-empty strings.",
        **_WRITE_ERRORS,
    }, body=request_body(ItemsDelete, {"one item": {"item_ids": ["SKU-1001"]}})))
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


@router.get("/v1/items/{item_id}", **doc(
    "site", "One catalogue item", {
        200: ok(Item, "The item as stored (fields never set are left out).", _ITEM),
        404: "No item with this id in the catalogue.",
        422: "`item_id` has characters an id cannot have.",
    }, parameters=[path_parameter("item_id", ID_PATTERN, "The item's id.", "85123A")]))
async def get_item(request: Request) -> Response:
    await require_site(request)  # inline like the other hot site routes (see api.query)
    item_id = request.path_params["item_id"]
    if not re.fullmatch(ID_PATTERN, item_id):
        raise ApiError(422, "invalid item id", [{"field": "item_id", "message": "invalid characters"}])
    item = request.app.state.engine.catalogue.current.items.get(item_id)
    if item is None:
        raise ApiError(404, f"no item {item_id!r} in the catalogue")
    return json_response(item.model_dump(exclude_none=True))
