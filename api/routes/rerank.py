"""POST /v1/rerank: a list the shop already has (search results, a category page) in the
visitor's order, each item with its reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.plain_route import PlainRoute
from api.auth import require_customer, require_site
from api.visitor_cookie import request_visitor, with_visitor_cookie
from api.openapi import doc, ok, request_body
from api.query import parse_body, require_json
from api.responses import json_response
from api.routes.recommendations import RecommendedItem
from engine.events.schema import ID_PATTERN
from engine.ranking.rerank import MAX_ITEMS

router = APIRouter(route_class=PlainRoute)


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_ITEMS,
        description=f"The item ids to order (1 to {MAX_ITEMS}); each comes back once, none is dropped or added.")
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (README)")


class Reranked(BaseModel):
    recommendation_id: str = Field(description="Send it back as `properties.recommendation_id` of the "
                                               "`recommendation_click` event.")
    model_version: str | None = Field(description="null: no model loaded yet (the items keep their order).")
    items: list[RecommendedItem] = Field(description="Best first for this visitor. Besides the for-you reasons: "
                                                     "`popular` (nothing known of the visitor yet), `as_given` "
                                                     "(an item the model does not know: after the others, in the "
                                                     "order given).")
    degraded: bool = Field(False, description="Present (true) when Redis was slow or down: best sellers first.")


_EXAMPLE_BODY = {"items": ["85123A", "22423", "21232"], "visitor_id": "v-42"}
_EXAMPLE = {"recommendation_id": "9f2c41d07a6b4e2c", "model_version": "20261123T212413Z-fdba61",
            "items": [{"item_id": "22423", "score": 0.41, "reason": "similar_to:85099B"},
                      {"item_id": "85123A", "score": 0.3, "reason": "popular"},
                      {"item_id": "21232", "score": 0.12, "reason": "because_you_viewed:85099B"}]}


@router.post("/v1/rerank", **doc(
    "site", "A list the shop has, in the visitor's order", {
        200: ok(Reranked, "The same items, best first for this visitor.", _EXAMPLE),
        403: "Site key not valid, or `customer_id` without a valid `customer_token` (and no admin key).",
        422: "A field is invalid (e.g. more than the allowed number of items): `errors` names it.",
    }, body=request_body(RerankRequest, {"search results": _EXAMPLE_BODY})))
async def post_rerank(request: Request) -> Response:
    await require_site(request)
    require_json(request)
    body = parse_body(RerankRequest, await request.body(), '{"items": [...]}')
    await require_customer(request, body.customer_id, body.customer_token)
    visitor_id, issued = request_visitor(request, body.visitor_id)
    result = await request.app.state.engine.recommender.rerank(visitor_id, body.customer_id, body.items)
    return with_visitor_cookie(request, json_response(result), issued)
