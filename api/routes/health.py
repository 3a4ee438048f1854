"""Liveness (no I/O) and readiness (Redis answers, a model is loaded)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from redis.exceptions import RedisError

from api.responses import json_response

router = APIRouter()
_OK = b'{"status":"ok"}'


@router.get("/health")
async def health() -> Response:
    return Response(_OK, media_type="application/json")


@router.get("/ready")
async def ready(request: Request) -> Response:
    engine = request.app.state.engine
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(0.5):
            await engine.redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError, TimeoutError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    model = engine.models.current
    checks["model"] = model.version if model else "none: run `vitrine train`"
    checks["catalogue_items"] = str(len(engine.catalogue.current))
    ok = checks["redis"] == "ok" and model is not None
    return json_response({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)
