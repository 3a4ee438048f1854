"""GET /v1/blocks/{slot}: the content block a visitor gets in a page slot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.plain_route import PlainRoute
from api.auth import require_customer, require_site
from api.visitor_cookie import request_visitor, with_visitor_cookie
from api.openapi import doc, ok
from api.query import openapi_parameters, parse_query
from api.responses import ApiError, json_response
from api.routes.recommendations import FIELDS_PATTERN, detail_fields
from engine.catalog.details import with_details
from engine.merch.blocks import UnknownSlot
from engine.events.schema import ID_PATTERN
from engine.merch.schema import NAME

router = APIRouter(route_class=PlainRoute)


class BlockQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    slot: str = Field(pattern=NAME, description="A slot of the rules' blocks", examples=["home_top"])
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (api/README.md)")
    item_id: str | None = Field(None, pattern=ID_PATTERN)
    fields: str | None = Field(None, max_length=100, pattern=FIELDS_PATTERN,
                               description="As on GET /v1/recommendations: item fields carried with the block's "
                                           "recommendations.", examples=["title,price"])


class SlotBlock(BaseModel):
    slot: str
    rules_version: str
    block: dict[str, Any] | None = Field(description="The rendered block (id, kind, format, campaign, title, body, "
                                                     "cta, link, image, recommendations), or null when none is "
                                                     "eligible.")
    degraded: bool = Field(False, description="Present (true) when Redis was slow or down.")


@router.get("/v1/blocks/{slot}", **doc(
    "site", "The content block a visitor gets in a page slot", {
        200: ok(SlotBlock, "The slot's block for this visitor (or `block: null`)."),
        403: "Site key not valid, or `customer_id` without a valid `customer_token` (and no admin key).",
        404: "The rules define no block for this slot.",
        422: "The slot or a query parameter is invalid: `errors` names it.",
    }, parameters=openapi_parameters(BlockQuery, path=("slot",))))
async def get_block(request: Request) -> Response:
    """A hot path like recommendations: plain calls instead of FastAPI dependencies (api.query)."""
    await require_site(request)
    query = parse_query(BlockQuery, request, **request.path_params)
    fields = detail_fields(query.fields)
    await require_customer(request, query.customer_id, query.customer_token)
    visitor_id, issued = request_visitor(request, query.visitor_id)
    engine = request.app.state.engine
    try:
        body = await engine.blocks.pick(query.slot, visitor_id, query.customer_id, query.item_id)
    except UnknownSlot as exc:
        raise ApiError(404, str(exc), [{"field": "slot", "message": str(exc)}]) from None
    if fields:
        body = block_with_details(body, engine.catalogue.current.items, fields)
    return with_visitor_cookie(request, json_response(body), issued)


def block_with_details(body: dict[str, Any], items: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A block answer whose recommendations carry the asked item ``fields``."""
    recommendations = (body.get("block") or {}).get("recommendations")
    if not (recommendations and recommendations.get("items")):
        return body
    return {**body, "block": {**body["block"], "recommendations": with_details(recommendations, items, fields)}}
