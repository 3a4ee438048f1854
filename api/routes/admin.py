"""Admin endpoints: profiles, model versions and hot reload."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import require_admin
from api.openapi import doc, ok, path_parameter
from api.query import path_id
from api.responses import ApiError, json_response
from engine.events.schema import ID_PATTERN
from engine.merch.segments import members
from engine.profiles import preferences
from engine.profiles.consent import withdrawn
from engine.profiles.preferences import Owner, readable
from engine.profiles.store import load_profiles
from engine.profiles.view import describe
from models import artifacts

router = APIRouter(dependencies=[Depends(require_admin)])


class Profile(BaseModel):
    visitor_id: str
    segments: list[str] = Field(description="The segments they are in now: built-in (`new`/`returning`, `loyal`, "
                                            "...) and the rules file's (engine/merch/README.md).")
    visitor: dict[str, Any] = Field(description="Visits, session, cart, affinities, consent.")
    customer_id: str | None = Field(description="The customer this visitor is linked to, if any.")
    customer: dict[str, Any] | None = Field(None, description="Present when linked: orders, RFM, purchases, "
                                                              "affinities, traits, consent.")
    declared_preferences: dict[str, Any] | None = Field(None, description="What the person declared (favourites, "
                                                        "alerts, watches, wishlist, contact choices); null: nothing.")


class ModelVersions(BaseModel):
    serving: str | None = Field(description="The version this process serves; null: none trained yet.")
    promoted: str | None = Field(description="The version marked current on disk.")
    versions: list[str] = Field(description="Versions kept on disk, oldest first.")
    meta: dict[str, Any] | None = Field(description="The served model's training metadata.")


class Reloaded(BaseModel):
    serving: str
    changed: bool = Field(description="Whether this call swapped the served model.")


@router.get("/v1/profiles/{visitor_id}", **doc(
    "admin", "A visitor's profile (and its linked customer's)", {
        200: ok(Profile, "The profile, scores decayed to now."),
        404: "No profile for this visitor.",
        422: "`visitor_id` has characters an id cannot have.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("visitor_id", ID_PATTERN, "The visitor's id (the `vt_vid` cookie).", "v-42")]))
async def get_profile(request: Request) -> Response:
    visitor_id = path_id(request, "visitor_id")
    engine = request.app.state.engine
    visitor, customer, customer_id = await load_profiles(engine.read_keys, visitor_id, None)
    owner = Owner("c", customer_id) if customer_id else Owner("v", visitor_id)
    record = await preferences.load(engine.redis, owner)
    declared = readable(record, visitor, customer, engine.settings.consent_required)
    if (visitor.visits == 0 and visitor.consent is None and visitor.customer_id is None and not visitor.channels
            and declared is None):
        raise ApiError(404, f"no profile for visitor {visitor_id!r}")
    now = time.time()
    usable = not withdrawn(visitor, customer, engine.settings.consent_required)
    segments = members(engine.rules.current.segments, visitor, customer, now, engine.recommender.scorer,
                       preferences.interests_of([record]) if usable else ((), ()))
    return json_response(describe(visitor_id, visitor, customer_id, customer, now,
                                  engine.settings.session_timeout_s, engine.catalogue.info, declared,
                                  segments=segments))


@router.get("/v1/admin/models", **doc("admin", "Model versions: served, promoted, on disk", {
    200: ok(ModelVersions, "The versions."),
}))
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


@router.post("/v1/admin/models/reload", **doc("admin", "Serve the promoted model now, or promote a version", {
    200: ok(Reloaded, "The version now served here; other processes follow within `VITRINE_MODEL_POLL_S`."),
    404: "No model version of this name on disk.",
    409: "No model trained yet: run `vitrine train`.",
    422: "A query parameter is invalid.",
}))
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
