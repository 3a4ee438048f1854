"""POST /v1/page: every strip and block of one page in one request.

A page with a strip and a block would otherwise make one request each; on a busy server they
queue one behind the other, and a new visitor's first request has to come back (with its visitor
cookie) before the next may leave. One request per page does away with both. The answers are
exactly those of GET /v1/recommendations and GET /v1/blocks/{slot}, in the order asked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.plain_route import PlainRoute
from api.auth import require_customer, require_site
from api.openapi import doc, ok, request_body
from api.query import invalid_request, parse_body, require_json
from api.responses import json_response
from api.routes.blocks import SlotBlock, block_with_details
from api.routes.recommendations import (FIELDS_DESCRIPTION, FIELDS_PATTERN, Recommendations, detail_fields,
                                        normal_categories)
from api.visitor_cookie import request_visitor, with_visitor_cookie
from engine.catalog import CATEGORY_PATTERN
from engine.catalog.details import with_details
from engine.events.schema import ID_PATTERN
from engine.merch.blocks import UnknownSlot
from engine.merch.schema import NAME
from engine.ranking.filters import ItemFilter
from engine.ranking.request import RecoRequest
from engine.recommend import UnknownPlacement

router = APIRouter(route_class=PlainRoute)
MAX_PARTS = 20


class PagePlacement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    placement: str = Field(min_length=1, max_length=64, examples=["home"])
    item_id: str | None = Field(None, pattern=ID_PATTERN, description="the page's item (product, cart)")
    category: list[Annotated[str, Field(max_length=200, pattern=CATEGORY_PATTERN)]] | None = Field(
        None, min_length=1, max_length=20, description="As on GET /v1/recommendations: only items in these "
                                                       "categories; the first is the page's category.")
    n: int = Field(10, ge=1, le=100)


class PageBlock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slot: str = Field(pattern=NAME, examples=["home_top"])
    item_id: str | None = Field(None, pattern=ID_PATTERN)


class PageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    placements: list[PagePlacement] = Field(default_factory=list, max_length=MAX_PARTS)
    blocks: list[PageBlock] = Field(default_factory=list, max_length=MAX_PARTS)
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (api/README.md)")
    fields: str | None = Field(None, max_length=100, pattern=FIELDS_PATTERN, description=FIELDS_DESCRIPTION,
                               examples=["title,price"])


class PageSlotBlock(SlotBlock):
    unknown_slot: str | None = Field(None, description="Present when the rules define no block for this slot "
                                                       "(`block` is then null; GET /v1/blocks/{slot} says 404).")


class PageAnswer(BaseModel):
    placements: list[Recommendations] = Field(description="One list per asked placement, in the order asked.")
    blocks: list[PageSlotBlock] = Field(description="One answer per asked slot, in the order asked.")


_EXAMPLE_BODY = {"placements": [{"placement": "home", "n": 8}], "blocks": [{"slot": "home_top"}],
                 "fields": "title,price"}


@router.post("/v1/page", **doc(
    "site", "Every strip and block of a page in one request", {
        200: ok(PageAnswer, "The lists and blocks, in the order asked; a new visitor gets the `vt_vid` cookie."),
        403: "Site key not valid, or `customer_id` without a valid `customer_token` (and no admin key).",
        415: "The body is not sent as JSON (`application/json`, or `text/plain` as a page's script may send it).",
        422: "A field is invalid, or a placement is unknown: `errors` names it (`placements[0].n`).",
    }, body=request_body(PageRequest, {"home page": _EXAMPLE_BODY})))
async def post_page(request: Request) -> Response:
    """``text/plain`` is accepted so that a page's script can send it cross-origin without a CORS
    preflight (one round trip fewer), as with beacons."""
    await require_site(request)
    require_json(request, beacon=True)
    body = parse_body(PageRequest, await request.body(), '{"placements": [...], "blocks": [...]}')
    if not body.placements and not body.blocks:
        raise invalid_request([{"field": "placements", "message": "ask for at least one placement or block"}])
    fields = detail_fields(body.fields)
    await require_customer(request, body.customer_id, body.customer_token)
    visitor_id, issued = request_visitor(request, body.visitor_id)
    engine = request.app.state.engine
    lists = [_placement(engine, p, visitor_id, body.customer_id, i) for i, p in enumerate(body.placements)]
    slots = [_block(engine, b, visitor_id, body.customer_id) for b in body.blocks]
    answers = await asyncio.gather(*lists, *slots)
    placements, blocks = answers[:len(lists)], answers[len(lists):]
    if fields:
        items = engine.catalogue.current.items
        placements = [with_details(p, items, fields) for p in placements]
        blocks = [block_with_details(b, items, fields) for b in blocks]
    return with_visitor_cookie(request, json_response({"placements": placements, "blocks": blocks}), issued)


async def _placement(engine: Any, asked: PagePlacement, visitor_id: str, customer_id: str | None,
                     index: int) -> dict[str, Any]:
    categories = normal_categories(asked.category)
    req = RecoRequest(placement=asked.placement, visitor_id=visitor_id, customer_id=customer_id,
                      item_id=asked.item_id, category=categories[0] if categories else None, n=asked.n,
                      filter=ItemFilter(categories=categories) if categories else None)
    try:
        return await engine.recommender.recommend(req)
    except UnknownPlacement as exc:
        raise invalid_request([{"field": f"placements[{index}].placement", "message": str(exc)}]) from None


async def _block(engine: Any, asked: PageBlock, visitor_id: str, customer_id: str | None) -> dict[str, Any]:
    """A slot the rules do not (or no longer) define answers no block, with why: the merchandiser
    may remove a slot's last block while pages still carry it, and the page's strips stay."""
    try:
        return await engine.blocks.pick(asked.slot, visitor_id, customer_id, asked.item_id)
    except UnknownSlot as exc:
        return {"slot": asked.slot, "rules_version": engine.rules.current.version, "block": None,
                "unknown_slot": str(exc)}

