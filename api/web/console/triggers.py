"""The triggers page: each trigger of the rules (and those gone from them that left counters) with
its kind, channel, whether enabled, control share, per-arm numbers, lift of sent over control with
its 95% interval (the experiments page's chart), suppressions, webhook and outbound-topic outcomes
and a few of its deliveries, from ``GET /v1/admin/triggers`` and ``GET /v1/admin/deliveries``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.web.console import admin
from api.web.console.experiments import Bar, Chart
from api.web.console.guard import page, signed_in

router = APIRouter(include_in_schema=False)
METRICS = (("conversion_rate", "Conversion rate"), ("revenue_per_person", "Revenue per person"))
DELIVERIES = 10


def lift_chart(report: dict[str, Any]) -> Chart | None:
    """Sent over control per metric; None while no metric has a lift (an arm without people)."""
    bars = []
    for metric, label in METRICS:
        lift = (report.get("lift") or {}).get(metric)
        if lift and lift.get("lift") is not None:
            low, high = lift["ci95"] if lift.get("ci95") else (None, None)
            bars.append(Bar(label, lift["lift"], low, high))
    return Chart("Sent over control", bars, left=190) if bars else None  # room for the longer labels


@router.get("/console/triggers")
async def triggers_page(request: Request) -> Response:
    session = await signed_in(request)
    answer = await admin.call(request, "GET", "/v1/admin/triggers")
    listed = []
    for report in answer.body["triggers"] if answer.ok else []:
        sent = await admin.call(request, "GET", "/v1/admin/deliveries",
                                params={"trigger": report["trigger"], "limit": str(DELIVERIES)})
        listed.append((report, lift_chart(report), sent.body["deliveries"] if sent.ok else []))
    return page(request, session, "triggers.html", title="Triggers", section="triggers", triggers=listed,
                shown=DELIVERIES, error=None if answer.ok else answer.message())
