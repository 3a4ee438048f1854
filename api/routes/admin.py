"""Admin endpoints: profiles, model versions and hot reload."""

from __future__ import annotations

import re
import time

from fastapi import APIRouter, Depends, Request, Response

from api.auth import require_admin
from api.responses import ApiError, json_response
from engine.events import ID_PATTERN
from engine.profile_store import load_profiles
from engine.profile_view import describe
from models import artifacts

router = APIRouter(dependencies=[Depends(require_admin)])


@router.get("/v1/profiles/{visitor_id}")
async def get_profile(request: Request, visitor_id: str) -> Response:
    if not re.match(ID_PATTERN, visitor_id):
        raise ApiError(422, "invalid visitor id", [{"field": "visitor_id", "message": "invalid characters"}])
    engine = request.app.state.engine
    visitor, customer, customer_id = await load_profiles(engine.redis.mget, visitor_id, None)
    if visitor.visits == 0 and visitor.consent is None and visitor.customer_id is None:
        raise ApiError(404, f"no profile for visitor {visitor_id!r}")
    return json_response(describe(visitor_id, visitor, customer_id, customer, time.time(),
                                  engine.settings.session_timeout_s, engine.catalogue.info))


@router.get("/v1/admin/models")
async def list_models(request: Request) -> Response:
    engine = request.app.state.engine
    models_dir = engine.settings.models_dir
    current = engine.models.current
    return json_response({
        "serving": current.version if current else None,
        "promoted": artifacts.current_version(models_dir),
        "versions": artifacts.versions(models_dir),
        "meta": current.artifact.meta if current else None,
    })


@router.post("/v1/admin/models/reload")
async def reload_model(request: Request, version: str | None = None) -> Response:
    """Serve the promoted model now (or promote ``version``, e.g. to roll back). Other replicas
    follow within ``VITRINE_MODEL_POLL_S``."""
    engine = request.app.state.engine
    models_dir = engine.settings.models_dir
    if version is not None:
        if version not in artifacts.versions(models_dir):
            raise ApiError(404, f"no model version {version!r}",
                           [{"field": "version", "message": "unknown version"}])
        artifacts.promote(models_dir, version)
    changed = await engine.models.reload()
    current = engine.models.current
    if current is None:
        raise ApiError(409, "no model trained yet: run `vitrine train`")
    return json_response({"serving": current.version, "changed": changed})
