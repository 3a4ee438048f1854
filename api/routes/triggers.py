"""Admin endpoints of the triggers: their reports, and the deliveries a shop without a webhook
endpoint pulls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_admin
from api.openapi import doc, ok, path_parameter
from api.query import openapi_parameters, parse_query
from api.responses import ApiError, json_response
from engine.merch.schema import NAME
from engine.triggers import deliveries, report

router = APIRouter(dependencies=[Depends(require_admin)])
CURSOR = r"^(\d{1,15}-\d{1,15}|\d{1,12}(\.\d{1,6})?)$"


class DeliveriesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    since: str | None = Field(None, pattern=CURSOR, description="The `next` cursor of the previous call, or unix "
                              "seconds; unset: from the oldest kept.", examples=["1767225600"])
    trigger: str | None = Field(None, pattern=NAME, description="Only this trigger's documents.")
    limit: int = Field(100, ge=1, le=1000, description="Documents per call.")


class TriggerId(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    trigger_id: str = Field(pattern=NAME)


class Deliveries(BaseModel):
    deliveries: list[dict[str, Any]] = Field(description="Documents as the webhook gets them, plus `cursor`.")
    next: str | None = Field(description="Pass as `since` to read on.")


class TriggerReport(BaseModel):
    trigger: str
    defined: bool = Field(description="False: gone from the rules, counters kept.")
    kind: str | None
    channel: str | None
    enabled: bool | None = Field(description="False: defined but switched off (`enabled: false`).")
    control_share: float | None
    attribution: str | None
    arms: dict[str, Any] = Field(description="`sent` and `control`: people, deliveries, conversions, "
                                             "conversion_rate, revenue, revenue_per_person.")
    lift: dict[str, Any] = Field(description="Sent over control: `{lift, ci95}` per metric, or null.")
    suppressed: dict[str, int] = Field(description="By reason: no_consent, capped, control_group.")
    deferred: dict[str, int] = Field(description="quiet_hours: deliveries moved to the end of the quiet hours.")
    dropped: dict[str, int] = Field(description="cancelled (no longer applied at the due time), not_in_audience.")
    webhook: dict[str, int] = Field(description="delivered, retried, dead_letter.")
    topic: dict[str, int] = Field(description="Kafka mode's outbound topic: produced, retried.")


class TriggerList(BaseModel):
    triggers: list[TriggerReport]


@router.get("/v1/admin/triggers", **doc("admin", "Every trigger's report", {
    200: ok(TriggerList, "The rules' triggers, and those gone from them that left counters."),
}))
async def list_triggers(request: Request) -> Response:
    engine = request.app.state.engine
    defined = engine.rules.current.rules.triggers
    ids = await report.reported(engine.redis, set(defined))
    return json_response({"triggers": [await report.trigger_report(engine.redis, tid, defined.get(tid))
                                       for tid in ids]})


@router.get("/v1/admin/triggers/{trigger_id}", **doc("admin", "One trigger's report: lift over control", {
    200: ok(TriggerReport, "Per arm people, deliveries, conversions, revenue; lift with a 95% interval."),
    404: "No trigger of this id in the rules, nor counters left by one.",
    422: "`trigger_id` is not a trigger id.",
}, parameters=[path_parameter("trigger_id", NAME, "The trigger's id in the rules file.", "cart-reminder")]))
async def get_trigger(request: Request) -> Response:
    tid = parse_query(TriggerId, request, **request.path_params).trigger_id
    engine = request.app.state.engine
    definition = engine.rules.current.rules.triggers.get(tid)
    if definition is None and not await report.has_counters(engine.redis, tid):
        raise ApiError(404, f"no trigger {tid!r}", [{"field": "trigger_id", "message": "unknown trigger"}])
    return json_response(await report.trigger_report(engine.redis, tid, definition))


@router.get("/v1/admin/deliveries", **doc("admin", "Trigger documents to send, for shops that pull", {
    200: ok(Deliveries, "Oldest first from `since`; the control group's are not here."),
    422: "A query parameter is invalid: `errors` names it.",
}, parameters=openapi_parameters(DeliveriesQuery)))
async def list_deliveries(request: Request) -> Response:
    query = parse_query(DeliveriesQuery, request)
    return json_response(await deliveries.read(request.app.state.engine.redis, query.since, query.trigger,
                                               query.limit))
