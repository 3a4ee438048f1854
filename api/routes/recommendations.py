"""GET /v1/recommendations: a placement's list for a visitor (and customer, page item)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_customer, require_site
from api.identity import request_visitor, with_visitor_cookie
from api.query import openapi_parameters, parse_query
from api.responses import ApiError, json_response
from engine.catalog import CATEGORY_PATTERN
from engine.events import ID_PATTERN
from engine.recommend import RecoRequest, UnknownPlacement

router = APIRouter()


class RecommendationsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    placement: str = Field(min_length=1, max_length=64, description="home, product, cart, category, ...")
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (README)")
    item_id: str | None = Field(None, pattern=ID_PATTERN, description="the page's item (product, cart)")
    category: str | None = Field(None, max_length=200, pattern=CATEGORY_PATTERN)
    n: int = Field(10, ge=1, le=100)


@router.get("/v1/recommendations", openapi_extra=openapi_parameters(RecommendationsQuery))
async def get_recommendations(request: Request) -> Response:
    """The hot path: checks and parsing are plain calls, not FastAPI dependencies (see api.query)."""
    await require_site(request)
    query = parse_query(RecommendationsQuery, request)
    await require_customer(request, query.customer_id, query.customer_token)
    visitor_id, issued = request_visitor(request, query.visitor_id)
    reco_request = RecoRequest(placement=query.placement, visitor_id=visitor_id, customer_id=query.customer_id,
                               item_id=query.item_id, category=query.category.lower() if query.category else None,
                               n=query.n)
    try:
        body = await request.app.state.engine.recommender.recommend(reco_request)
    except UnknownPlacement as exc:
        raise ApiError(422, str(exc), [{"field": "placement", "message": str(exc)}]) from None
    return with_visitor_cookie(request, json_response(body), issued)
