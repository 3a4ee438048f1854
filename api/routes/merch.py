"""Merchandiser admin: rules status and reload, preview of a draft, experiment reports."""

from __future__ import annotations

import asyncio

import re
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_admin
from api.openapi import doc, ok, path_parameter, request_body
from api.query import parse_body, require_json
from api.responses import ApiError, json_response
from api.routes.blocks import SlotBlock
from api.routes.recommendations import Recommendations
from engine.merch import experiments
from engine.merch.blocks import UnknownSlot
from engine.events.schema import ID_PATTERN
from engine.merch.exposure import experiment_counters
from engine.ranking.request import RecoRequest
from engine.recommend import UnknownPlacement
from engine.catalog import CATEGORY_PATTERN
from engine.merch.live import MAX_RULES_BYTES, RulesSnapshot
from engine.merch.loader import RulesError, RulesInvalid
from engine.merch.schema import NAME

router = APIRouter(dependencies=[Depends(require_admin)])


def _rules_error(message: str, errors: list[RulesError]) -> ApiError:
    detail = [{"field": e.field or "rules", "message": e.message, "file": e.file, "line": e.line}
              for e in errors]
    return ApiError(422, f"{message}: " + "; ".join(str(e) for e in errors), detail)  # type: ignore[arg-type]


class RulesProblem(BaseModel):
    file: str
    line: int | None
    field: str
    message: str


class RulesStatus(BaseModel):
    version: str = Field(description="The rules served: their version, or `default` (built-in placements).")
    source: str | None = None
    file: str | None = Field(description="`VITRINE_RULES_FILE`, if set.")
    loaded_at: float | None = None
    status: str = Field(description="`ok`, or `error` while the file on disk is invalid (the last good rules "
                                    "are still served).")
    errors: list[RulesProblem]
    error_since: float | None = None
    placements: dict[str, list[str]]
    slots: list[str]


class RulesReloaded(RulesStatus):
    changed: bool


@router.get("/v1/admin/rules", **doc("admin", "The live rules: version, placements, slots, last load error", {
    200: ok(RulesStatus, "The rules status."),
}))
async def rules_status(request: Request) -> Response:
    return json_response(request.app.state.engine.rules.status())


@router.post("/v1/admin/rules/reload", **doc("admin", "Read the rules file now", {
    200: ok(RulesReloaded, "The file was read and is valid (`changed`: it differed from the live rules)."),
    409: "No rules file configured (`VITRINE_RULES_FILE`).",
    422: "The file is invalid: `errors` give file, line and field; the last good rules are still served.",
}))
async def rules_reload(request: Request) -> Response:
    """Read the rules file now instead of at the next poll; 422 (still serving the last good
    rules) when it is invalid."""
    holder = request.app.state.engine.rules
    if holder.path is None:
        raise ApiError(409, "no rules file configured (set VITRINE_RULES_FILE)")
    changed = await asyncio.to_thread(holder.reload, force=True)
    if holder.errors:
        raise _rules_error(f"rules file rejected, still serving {holder.current.version}", holder.errors)
    return json_response({**holder.status(), "changed": changed})


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # the JSON types its schema states, no coercion

    rules: str = Field(max_length=MAX_RULES_BYTES, description="The draft rules file (YAML text).")
    visitor_id: str = Field(pattern=ID_PATTERN)
    customer_id: str | None = Field(None, pattern=ID_PATTERN)
    item_id: str | None = Field(None, pattern=ID_PATTERN)
    category: str | None = Field(None, max_length=200, pattern=CATEGORY_PATTERN)
    placements: list[str] | None = Field(None, max_length=50)
    slots: list[str] | None = Field(None, max_length=50)
    n: int = Field(10, ge=1, le=100)
    at: datetime | None = Field(None, description="Preview as of this time (e.g. a campaign's first day).")


class PreviewMiss(BaseModel):
    error: str = Field(description="Why this placement or slot has nothing under these rules (e.g. unknown).")


class PreviewSide(BaseModel):
    rules_version: str
    recommendations: dict[str, Recommendations | PreviewMiss] = Field(description="Per placement.")
    blocks: dict[str, SlotBlock | PreviewMiss] = Field(description="Per slot.")


class Preview(BaseModel):
    visitor_id: str
    at: float = Field(description="The time previewed (unix seconds).")
    live: PreviewSide
    draft: PreviewSide


class ArmReport(BaseModel):
    visitors: int
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    ctr: float | None
    conversion: float | None
    revenue_per_visitor: float | None
    lift_vs_control: dict[str, Any] | None = Field(None, description="Per metric: lift and its 95% interval.")


class ExperimentReport(BaseModel):
    experiment: str
    control: str
    arms: dict[str, ArmReport]
    placement: str | None = None
    running: bool | None = None
    weights: dict[str, float] | None = None
    control_group_share: float | None = None


_DRAFT = "placements:\n  home:\n    pins:\n      - {item: \"85123A\", slot: 1}\n"


async def _side(request: Request, snap: RulesSnapshot, body: PreviewRequest, placements: list[str],
                slots: list[str], now: float) -> dict[str, Any]:
    engine = request.app.state.engine
    recos: dict[str, Any] = {}
    for placement in placements:
        req = RecoRequest(placement=placement, visitor_id=body.visitor_id, customer_id=body.customer_id,
                          item_id=body.item_id, category=body.category.lower() if body.category else None,
                          n=body.n)
        try:
            recos[placement] = await engine.recommender.recommend(req, snap, now)
        except UnknownPlacement as exc:
            recos[placement] = {"error": str(exc)}
    blocks: dict[str, Any] = {}
    for slot in slots:
        try:
            blocks[slot] = await engine.blocks.pick(slot, body.visitor_id, body.customer_id, body.item_id,
                                                    snap, now, explain=True)
        except UnknownSlot as exc:
            blocks[slot] = {"error": str(exc)}
    return {"rules_version": snap.version, "recommendations": recos, "blocks": blocks}


@router.post("/v1/admin/preview", **doc(
    "admin", "A visitor's lists and blocks under a draft rules file and under the live one", {
        200: ok(Preview, "Both sides; nothing is written."),
        422: "A field is invalid, or the draft is (`errors` give line and field).",
    }, body=request_body(PreviewRequest, {"pin on home": {"rules": _DRAFT, "visitor_id": "v-42",
                                                        "placements": ["home"], "n": 5}})))
async def preview(request: Request) -> Response:
    """What one visitor gets under a draft and under the live rules, side by side. Nothing is
    written: the draft is never made live and no impression is recorded."""
    require_json(request)
    body = parse_body(PreviewRequest, await request.body(), "{\"rules\": ..., \"visitor_id\": ...}")
    engine = request.app.state.engine
    try:
        draft = await asyncio.to_thread(engine.rules.parse, body.rules.encode(), "draft")  # slow on a big file
    except RulesInvalid as exc:
        raise _rules_error("the draft is invalid", exc.errors) from None
    live = engine.rules.current
    now = body.at.timestamp() if body.at and body.at.tzinfo else (
        body.at.replace(tzinfo=timezone.utc).timestamp() if body.at else time.time())
    placements = body.placements or sorted(set(draft.placements) | set(live.placements))
    slots = body.slots or sorted(set(draft.slots) | set(live.slots))
    return json_response({
        "visitor_id": body.visitor_id,
        "at": now,
        "live": await _side(request, live, body, placements, slots, now),
        "draft": await _side(request, draft, body, placements, slots, now),
    })


class ExperimentVariant(BaseModel):
    name: str
    weight: float


class ExperimentSummary(BaseModel):
    id: str = Field(description="The experiment's id in the rules, or `holdout` (the global control group).")
    placement: str | None
    start: str | None = Field(description="ISO-8601, or null (open-ended).")
    end: str | None
    variants: list[ExperimentVariant]
    control: str = Field(description="The arm lift is measured against.")
    status: str = Field(description="`scheduled`, `running` or `ended`.")
    report: ExperimentReport


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]
    rules_version: str


@router.get("/v1/admin/experiments", **doc(
    "admin", "Every experiment of the live rules with its status and report", {
        200: ok(ExperimentList, "The rules' experiments in their order, then `holdout` when the rules have a "
                                "control group (or it has data)."),
        503: "Redis is unavailable: retry.",
    }))
async def experiment_list(request: Request) -> Response:
    engine = request.app.state.engine
    snap = engine.rules.current
    ids = [*snap.rules.experiments, experiments.HOLDOUT]
    counters = dict(zip(ids, await asyncio.gather(*(experiment_counters(engine.redis, i) for i in ids))))
    return json_response({"experiments": experiments.listing(snap.rules, counters, time.time()),
                          "rules_version": snap.version})


@router.get("/v1/admin/experiments/{experiment_id}", **doc(
    "admin", "An experiment's per-arm results and lift against control", {
        200: ok(ExperimentReport, "Visitors, impressions, CTR, conversion, revenue per visitor, lift with 95% CI."),
        404: "No such experiment in the rules, and no data recorded for it.",
        422: "`experiment_id` is not a valid name.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("experiment_id", NAME, "The experiment's id in the rules, or `holdout`.",
                                  "holdout")]))
async def experiment_report(request: Request) -> Response:
    experiment_id = request.path_params["experiment_id"]
    if not re.fullmatch(NAME, experiment_id):
        raise ApiError(422, "invalid experiment id", [{"field": "experiment_id", "message": "invalid characters"}])
    engine = request.app.state.engine
    counters = await experiment_counters(engine.redis, experiment_id)
    report = experiments.report_for(experiment_id, engine.rules.current.rules, counters, time.time())
    if report is None:
        raise ApiError(404, f"no experiment {experiment_id!r} in the rules and no data recorded for it")
    return json_response(report)
