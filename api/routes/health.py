"""Liveness (no I/O) and readiness (Redis answers, a model is loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.metrics import metrics_endpoint
from api.openapi import doc, ok
from api.responses import json_response
from engine.store.connect import answers

router = APIRouter()
_OK = b'{"status":"ok"}'


class Health(BaseModel):
    status: str = Field(description="Always `ok`: the process answers.")


class Readiness(BaseModel):
    status: str = Field(description="`ready`, or `not ready`.")
    checks: dict[str, str] = Field(description="`redis`, `model` and `catalogue_items`, each with its state.")


@router.get("/health", **doc("ops", "Liveness: the process answers (no I/O)", {
    200: ok(Health, "Alive.", {"status": "ok"}),
}))
async def health() -> Response:
    return Response(_OK, media_type="application/json")


@router.get("/ready", **doc("ops", "Readiness: Redis answers and a model is loaded", {
    200: ok(Readiness, "Ready to serve."),
    503: ok(Readiness, "Not ready: `checks` says what is missing."),
}))
async def ready(request: Request) -> Response:
    engine = request.app.state.engine
    checks = {"redis": await answers(engine.redis)}
    model = engine.models.current
    checks["model"] = model.version if model else "none: run `vitrine train`"
    checks["catalogue_items"] = str(len(engine.catalogue.current))
    ok = checks["redis"] == "ok" and model is not None
    return json_response({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)


router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], **doc(
    "ops", "Prometheus metrics (all workers' numbers with several workers)", {
        200: ok(None, "The Prometheus text format.", media_type="text/plain"),
    }))
