"""Segments for dashboards (admin): every segment with an estimated size and a few members.
Sizes come from a bounded sample of profiles, reused for a short while
(``engine.customers.segment_counts``): calling it often costs Redis little."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import require_admin
from api.openapi import doc, ok, path_parameter
from api.responses import ApiError, json_response
from engine.merch.schema import NAME

router = APIRouter(dependencies=[Depends(require_admin)])


class SegmentCount(BaseModel):
    name: str
    source: Literal["default", "rules"] = Field(description="`default`: built in; `rules`: the rules file's "
                                                            "`segments:` (which may redefine a built-in one).")
    description: str
    count: int = Field(description="Visitor profiles in the segment (an estimate unless `count_method` says "
                                   "counted).")
    sample: list[str] = Field(description="Up to 10 members' visitor ids (GET /v1/profiles/{visitor_id}).")


class SegmentCounts(BaseModel):
    segments: list[SegmentCount]
    count_method: str = Field(description="How the counts were made, in one sentence.")
    sample_size: int = Field(description="Visitor profiles evaluated.")
    total: int = Field(description="Visitor profiles in Redis (estimated unless counted).")
    unit: str = Field(description="What is counted: a visitor profile (a cookie).")
    computed_at: str = Field(description="When (ISO 8601, UTC); reused for `VITRINE_SEGMENT_COUNTS_TTL_S`.")
    rules_version: str


class SegmentDetail(SegmentCount):
    definition: dict[str, Any] = Field(description="The conditions, as the rules file writes them.")
    count_method: str
    computed_at: str


async def _counts(request: Request) -> dict[str, Any]:
    engine = request.app.state.engine
    snap = engine.rules.current
    return await engine.segment_counts.get(snap.version, snap.segments, engine.recommender.scorer)


@router.get("/v1/admin/segments", **doc("admin", "Every segment with its estimated size and a few members", {
    200: ok(SegmentCounts, "Built-in segments first, then the rules file's."),
    503: "Redis is unavailable: retry.",
}))
async def list_segments(request: Request) -> Response:
    return json_response(await _counts(request))


@router.get("/v1/admin/segments/{name}", **doc(
    "admin", "One segment: its definition, estimated size and a few members", {
        200: ok(SegmentDetail, "The segment."),
        404: "No segment of this name (built in or in the rules file).",
        422: "`name` is not a valid segment name.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("name", NAME, "The segment's name.", "loyal")]))
async def get_segment(request: Request) -> Response:
    name = request.path_params["name"]
    if not re.fullmatch(NAME, name):
        raise ApiError(422, "invalid segment name", [{"field": "name", "message": "invalid characters"}])
    segments = request.app.state.engine.rules.current.segments
    if name not in segments.rules:
        raise ApiError(404, f"no segment {name!r}", [{"field": "name", "message": "known: "
                                                       + ", ".join(sorted(segments.rules))}])
    counts = await _counts(request)
    row = next(s for s in counts["segments"] if s["name"] == name)
    return json_response({**row, "definition": segments.rules[name].model_dump(exclude_none=True,
                                                                            exclude={"description"}),
                          "count_method": counts["count_method"], "computed_at": counts["computed_at"]})
