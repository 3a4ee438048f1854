"""GET /v1/blocks/{slot}: the content block a visitor gets in a page slot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.auth import require_site
from api.identity import request_visitor, set_visitor_cookie
from api.responses import ApiError, json_response
from engine.blocks import UnknownSlot
from engine.events import ID_PATTERN
from engine.rules_schema import NAME

router = APIRouter()
Id = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("/v1/blocks/{slot}", dependencies=[Depends(require_site)])
async def get_block(
    request: Request,
    slot: Annotated[str, Path(pattern=NAME)],
    visitor_id: Id = None,
    customer_id: Id = None,
    item_id: Id = None,
) -> Response:
    settings = request.app.state.settings
    visitor_id, issued = request_visitor(request, visitor_id)
    try:
        body = await request.app.state.engine.blocks.pick(slot, visitor_id, customer_id, item_id)
    except UnknownSlot as exc:
        raise ApiError(404, str(exc), [{"field": "slot", "message": str(exc)}]) from None
    response = json_response(body)
    if issued:
        set_visitor_cookie(response, issued, max_age_s=settings.visitor_ttl_s, secure=settings.cookie_secure)
    return response
