"""The segments page: each segment with its member count and a few members (linking to the
customer page), from ``GET /v1/admin/segments``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.web.console import admin
from api.web.console.guard import page, signed_in

router = APIRouter(include_in_schema=False)


def segments_context(status: int, body: Any, message: str = "") -> dict[str, Any]:
    """The page's context from the admin API's answer: ``segments`` (largest first), how counts are
    made, or the ``error``."""
    if not 200 <= status < 300 or not isinstance(body, dict):
        return {"segments": [], "error": message or f"the segments API answered {status}"}
    listed = sorted(body.get("segments", []), key=lambda s: (-int(s.get("count", 0)), s.get("name", "")))
    return {"error": None, "segments": listed, "count_method": body.get("count_method"),
            "sample_size": body.get("sample_size"), "computed_at": body.get("computed_at")}


@router.get("/console/segments")
async def segments_page(request: Request) -> Response:
    session = await signed_in(request)
    answer = await admin.call(request, "GET", "/v1/admin/segments")
    context = segments_context(answer.status, answer.body, answer.message())
    return page(request, session, "segments.html", title="Segments", section="segments", **context)
