"""GET /v1/recommendations: a placement's list for a visitor (and customer, page item)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_customer, require_site
from api.identity import request_visitor, with_visitor_cookie
from api.openapi import doc, ok
from api.query import openapi_parameters, parse_query
from api.responses import ApiError, json_response
from engine.catalog import CATEGORY_PATTERN
from engine.events.schema import ID_PATTERN
from engine.recommend import RecoRequest, UnknownPlacement

router = APIRouter()


class RecommendationsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    placement: str = Field(min_length=1, max_length=64, description="home, product, cart, category, ...",
                           examples=["home"])
    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the vt_vid cookie")
    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="needs customer_token or the admin key")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of customer_id (api/README.md)")
    item_id: str | None = Field(None, pattern=ID_PATTERN, description="the page's item (product, cart)")
    category: str | None = Field(None, max_length=200, pattern=CATEGORY_PATTERN)
    n: int = Field(10, ge=1, le=100)


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str = Field(description="Why it is here: `because_you_viewed:ITEM`, `similar_to:ITEM`, `trending`, "
                                    "`pinned`... (api/README.md, Recommendations)")


class ExperimentArm(BaseModel):
    id: str = Field(description="The experiment (or `holdout`).")
    arm: str


class Recommendations(BaseModel):
    recommendation_id: str = Field(description="Send it back as `properties.recommendation_id` of the "
                                               "`recommendation_click` event.")
    placement: str
    model_version: str | None = Field(description="null: no model loaded yet.")
    rules_version: str
    items: list[RecommendedItem]
    experiment: ExperimentArm | None = Field(None, description="Present when an experiment built this list.")
    degraded: bool = Field(False, description="Present (true) when Redis was slow or down: the list comes "
                                              "from the model alone.")


_EXAMPLE = {"recommendation_id": "9f2c41d07a6b4e2c", "placement": "home", "model_version": "20261123T212413Z-fdba61",
            "rules_version": "default",
            "items": [{"item_id": "21733", "score": 0.158, "reason": "because_you_viewed:85123A"}]}


@router.get("/v1/recommendations", **doc(
    "site", "A placement's list for a visitor", {
        200: ok(Recommendations, "The list, best first; a new visitor gets the `vt_vid` cookie.", _EXAMPLE),
        403: "Site key not valid, or `customer_id` without a valid `customer_token` (and no admin key).",
        422: "A query parameter is invalid, or the placement is unknown: `errors` names it.",
    }, parameters=openapi_parameters(RecommendationsQuery)))
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
