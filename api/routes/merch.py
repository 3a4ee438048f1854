"""Merchandiser admin: rules status and reload, preview of a draft, experiment reports."""

from __future__ import annotations

import asyncio

import re
import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import require_admin
from api.query import require_json
from api.responses import ApiError, json_response
from engine import experiments
from engine.blocks import UnknownSlot
from engine.events import ID_PATTERN
from engine.field_path import field_errors
from engine.exposure import experiment_key
from engine.recommend import RecoRequest, UnknownPlacement
from engine.catalog import CATEGORY_PATTERN
from engine.rules_live import MAX_RULES_BYTES, RulesSnapshot
from engine.rules_loader import RulesError, RulesInvalid
from engine.rules_schema import NAME

router = APIRouter(dependencies=[Depends(require_admin)])


def _rules_error(message: str, errors: list[RulesError]) -> ApiError:
    detail = [{"field": e.field or "rules", "message": e.message, "file": e.file, "line": e.line}
              for e in errors]
    return ApiError(422, f"{message}: " + "; ".join(str(e) for e in errors), detail)  # type: ignore[arg-type]


@router.get("/v1/admin/rules")
async def rules_status(request: Request) -> Response:
    return json_response(request.app.state.engine.rules.status())


@router.post("/v1/admin/rules/reload")
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
    model_config = ConfigDict(extra="forbid")

    rules: str = Field(max_length=MAX_RULES_BYTES, description="The draft rules file (YAML text).")
    visitor_id: str = Field(pattern=ID_PATTERN)
    customer_id: str | None = Field(None, pattern=ID_PATTERN)
    item_id: str | None = Field(None, pattern=ID_PATTERN)
    category: str | None = Field(None, max_length=200, pattern=CATEGORY_PATTERN)
    placements: list[str] | None = Field(None, max_length=50)
    slots: list[str] | None = Field(None, max_length=50)
    n: int = Field(10, ge=1, le=100)
    at: datetime | None = Field(None, description="Preview as of this time (e.g. a campaign's first day).")


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


@router.post("/v1/admin/preview")
async def preview(request: Request) -> Response:
    """What one visitor gets under a draft and under the live rules, side by side. Nothing is
    written: the draft is never made live and no impression is recorded."""
    require_json(request)
    try:
        body = PreviewRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ApiError(422, "invalid preview request: " + "; ".join(f"{e['field']}: {e['message']}"
                                                                    for e in errors), errors) from None
    engine = request.app.state.engine
    try:
        draft = await asyncio.to_thread(engine.rules.parse, body.rules.encode(), "draft")  # ~20 ms per KiB
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


@router.get("/v1/admin/experiments/{experiment_id}")
async def experiment_report(request: Request, experiment_id: str) -> Response:
    if not re.match(NAME, experiment_id):
        raise ApiError(422, "invalid experiment id", [{"field": "experiment_id", "message": "invalid characters"}])
    engine = request.app.state.engine
    raw = await engine.redis.zrange(experiment_key(experiment_id), 0, -1, withscores=True)
    counters = {member.decode(): score for member, score in raw}
    rules = engine.rules.current.rules
    config = rules.experiments.get(experiment_id)
    if experiment_id == experiments.HOLDOUT:
        arms, control = [experiments.PERSONALISED], experiments.CONTROL
    elif config is not None:
        arms, control = [v.name for v in config.variants], config.control or experiments.CONTROL
    elif counters:
        arms, control = [], experiments.CONTROL
    else:
        raise ApiError(404, f"no experiment {experiment_id!r} in the rules and no data recorded for it")
    seen = {member.rsplit(":", 1)[0] for member in counters}
    arms = list(dict.fromkeys([*arms, *sorted(seen), experiments.CONTROL]))
    report = experiments.report(experiment_id, arms, control, counters)
    if config is not None:
        report["placement"] = config.placement
        report["running"] = config.active(time.time())
        report["weights"] = {v.name: v.weight for v in config.variants}
    if rules.control_group is not None:
        report["control_group_share"] = rules.control_group.share
    return json_response(report)
