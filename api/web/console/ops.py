"""The operations page: requests, latency percentiles per route, events per second, degraded
answers, read from the service's own Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families

from api.web.console import admin
from api.web.console.guard import page, scripted, signed_in

router = APIRouter(include_in_schema=False)
LATENCY = "vitrine_http_request_duration_seconds"


@dataclass
class RouteNumbers:
    route: str
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound, count), interpolated within its
    bucket as Prometheus' ``histogram_quantile`` does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def summarise(text: str) -> dict[str, Any]:
    """Per route (all methods and statuses together): requests, 5xx, latency percentiles; and the
    service's counters."""
    buckets: dict[str, dict[float, float]] = {}
    errors: dict[str, float] = {}
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{LATENCY}_bucket":
                route = sample.labels["route"]
                bound = float(sample.labels["le"])
                per = buckets.setdefault(route, {})
                per[bound] = per.get(bound, 0.0) + sample.value
            elif sample.name == f"{LATENCY}_count" and sample.labels.get("status") == "5xx":
                errors[sample.labels["route"]] = errors.get(sample.labels["route"], 0.0) + sample.value
            elif sample.name.endswith("_total") and not sample.labels:
                counters[sample.name] = sample.value
            elif sample.name.endswith("_total"):
                label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                counters[f"{sample.name}{{{label}}}"] = sample.value
    routes = []
    for route, per in buckets.items():
        ordered = sorted(per.items())
        ms = [quantile(ordered, q) for q in (0.5, 0.95, 0.99)]
        routes.append(RouteNumbers(route, int(ordered[-1][1]), int(errors.get(route, 0)),
                                   *(round(v * 1000, 2) if v is not None else None for v in ms)))
    routes.sort(key=lambda r: r.requests, reverse=True)
    return {"routes": routes, "counters": counters}


async def _numbers(request: Request) -> dict[str, Any]:
    metrics = await admin.call(request, "GET", "/metrics")
    summary = summarise(metrics.text) if metrics.status == 200 else {"routes": [], "counters": {}}
    health = await admin.call(request, "GET", "/ready")
    now = time.monotonic()
    accepted = summary["counters"].get("vitrine_events_accepted_total", 0.0)
    previous = getattr(request.app.state, "console_ops_sample", None)
    rate = None
    if previous is not None and now > previous[0]:
        rate = round((accepted - previous[1]) / (now - previous[0]), 1)
    request.app.state.console_ops_sample = (now, accepted)
    return {**summary, "events_per_s": rate, "events_accepted": accepted,
            "degraded": request.app.state.engine.recommender.degraded_total, "health": health.body,
            "health_status": health.status}


@router.get("/console/ops")
async def ops_page(request: Request) -> Response:
    session = await signed_in(request)
    return page(request, session, "ops.html", title="Operations", section="ops", **await _numbers(request))


@router.get("/console/ops/numbers")
async def ops_numbers(request: Request) -> Response:
    """For the page's script, refreshed every few seconds."""
    await scripted(request)
    numbers = await _numbers(request)
    numbers["routes"] = [vars(r) for r in numbers["routes"]]
    return JSONResponse(numbers)
