"""GET /v1/recommendations: a placement's list for a visitor (and customer, page item)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import require_site
from api.identity import request_visitor, set_visitor_cookie
from api.responses import ApiError, json_response
from engine.catalog import CATEGORY_PATTERN
from engine.events import ID_PATTERN
from engine.recommend import RecoRequest, UnknownPlacement

router = APIRouter()
Id = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("/v1/recommendations", dependencies=[Depends(require_site)])
async def get_recommendations(
    request: Request,
    placement: Annotated[str, Query(min_length=1, max_length=64)],
    visitor_id: Id = None,
    customer_id: Id = None,
    item_id: Id = None,
    category: Annotated[str | None, Query(max_length=200, pattern=CATEGORY_PATTERN)] = None,
    n: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    settings = request.app.state.settings
    visitor_id, issued = request_visitor(request, visitor_id)
    reco_request = RecoRequest(placement=placement, visitor_id=visitor_id, customer_id=customer_id,
                               item_id=item_id, category=category.lower() if category else None, n=n)
    try:
        body = await request.app.state.engine.recommender.recommend(reco_request)
    except UnknownPlacement as exc:
        raise ApiError(422, str(exc), [{"field": "placement", "message": str(exc)}]) from None
    response = json_response(body)
    if issued:
        set_visitor_cookie(response, issued, max_age_s=settings.visitor_ttl_s, secure=settings.cookie_secure)
    return response
