"""PUT and GET /v1/visitors/{visitor_id}/preferences: what a person declares they like and want to
hear about (engine.profiles.preferences)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import require_customer, require_site
from api.openapi import doc, ok, path_parameter, request_body
from api.query import invalid_request, json_body, openapi_parameters, parse_query, path_id, require_json
from api.responses import ApiError, json_response
from engine.events.fields import field_errors
from engine.events.schema import ID_PATTERN, Event
from engine.ingest.writer import SinkUnavailable
from engine.profiles import consent, preferences
from engine.profiles.preferences import Declared, Owner, PreferencesIn
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.store import load_profiles

router = APIRouter()


class PreferencesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    customer_id: str | None = Field(None, pattern=ID_PATTERN, description="Address the customer's preferences "
                                    "(needs `customer_token` or the admin key). Default: the customer the "
                                    "visitor is linked to, whose token is then required too.")
    customer_token: str | None = Field(None, max_length=128, description="HMAC-SHA256 of the customer id "
                                       "(api/README.md, Identity and trust).")


class ChannelState(BaseModel):
    state: str = Field(description="granted, withdrawn or not_given: the person's consent records, a refusal on "
                                   "any of their devices winning.")
    chosen_at: str | None = Field(description="When this endpoint last recorded a choice for the channel.")
    source: str | None


class AlertOut(BaseModel):
    item_id: str
    below: float


class Preferences(BaseModel):
    visitor_id: str
    customer_id: str | None = Field(description="Whose preferences these are when a customer's.")
    favourite_categories: list[str]
    favourite_brands: list[str]
    price_alerts: list[AlertOut]
    watches: list[str] = Field(description="Declared back-in-stock watches.")
    wishlist: list[str] = Field(description="Items wishlisted (`add_to_wishlist` events): watches too.")
    channels: dict[str, ChannelState] = Field(description="email, push, on_site.")
    updated_at: str | None
    source: str | None
    used_for_personalisation: bool = Field(description="false while profiling consent is withdrawn (or GPC): the "
                                                       "favourites are kept but do not shape lists or blocks.")


_RESPONSES: dict[int, Any] = {
    403: "Site key not valid, or a customer's preferences without a valid `customer_token` (and no admin key).",
    422: "The path id, a query parameter or a body field is invalid: `errors` names it "
         "(`favourite_categories[2]`, `price_alerts[0].below`).",
    503: "Redis (or, with channel choices, the event log) is unavailable: retry.",
}
_PARAMETERS = [path_parameter("visitor_id", ID_PATTERN, "The visitor's id (the `vt_vid` cookie).", "v-42"),
               *openapi_parameters(PreferencesQuery)]
_EXAMPLE = {"favourite_categories": ["kitchen.mugs"], "favourite_brands": ["acme"],
            "price_alerts": [{"item_id": "85123A", "below": 2.0}], "watches": ["22423"],
            "channels": {"email": True, "push": False, "on_site": True}, "source": "account_page"}


async def _owner(request: Request, visitor_id: str) -> tuple[Owner, VisitorProfile, CustomerProfile | None]:
    """Whose record the request addresses, after the token check; and the person's profiles."""
    query = parse_query(PreferencesQuery, request)
    engine = request.app.state.engine
    visitor, customer, linked = await load_profiles(engine.read_keys, visitor_id, query.customer_id)
    customer_id = query.customer_id or linked
    await require_customer(request, customer_id, query.customer_token)
    if customer_id is None:
        return Owner("v", visitor_id), visitor, None
    return Owner("c", customer_id), visitor, customer


def _view(request: Request, visitor_id: str, owner: Owner, declared: Declared, visitor: VisitorProfile,
          customer: CustomerProfile | None) -> dict[str, Any]:
    settings = request.app.state.settings
    wishlist = (customer.watching if customer is not None else visitor.watching)
    used = not consent.withdrawn(visitor, customer, settings.consent_required)
    body = preferences.describe(declared, wishlist, consent.state(visitor, customer, settings.consent_required), used)
    return {"visitor_id": visitor_id, "customer_id": owner.id if owner.kind == "c" else None, **body}


@router.get("/v1/visitors/{visitor_id}/preferences", **doc(
    "site", "A person's declared preferences", {**_RESPONSES, 200: ok(Preferences, "The preferences (empty lists "
                                                                    "when none were declared).")},
    parameters=_PARAMETERS))
async def get_preferences(request: Request) -> Response:
    await require_site(request)
    visitor_id = path_id(request, "visitor_id")
    owner, visitor, customer = await _owner(request, visitor_id)
    declared = await preferences.load(request.app.state.engine.redis, owner)
    return json_response(_view(request, visitor_id, owner, declared, visitor, customer))


@router.put("/v1/visitors/{visitor_id}/preferences", **doc(
    "site", "Declare preferences: favourites, price alerts, watches, contact choices", {
        **_RESPONSES, 200: ok(Preferences, "Stored; the preferences as they now are."),
    }, body=request_body(PreferencesIn, {"declared": _EXAMPLE},
                         "Replaces the favourites, alerts and watches (send all of them); each channel named "
                         "is recorded as a consent choice, the others keep theirs."),
    parameters=_PARAMETERS))
async def put_preferences(request: Request) -> Response:
    await require_site(request)
    require_json(request)
    visitor_id = path_id(request, "visitor_id")
    raw = json_body(await request.body(), "a preferences object")
    if not isinstance(raw, dict):
        raise invalid_request([{"field": "body", "message": f"must be an object, not {type(raw).__name__}"}])
    try:
        body = PreferencesIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(field_errors(exc)) from None
    settings = request.app.state.settings
    if errors := preferences.bound_errors(body, settings.preferences_max_favourites, settings.preferences_max_alerts):
        raise invalid_request(errors)
    owner, visitor, customer = await _owner(request, visitor_id)
    engine = request.app.state.engine
    now = time.time()
    if body.channels is not None and (chosen := body.channels.chosen()):
        await _record_choices(request, visitor_id, owner, chosen, body.source, now)
        visitor, customer, _ = await load_profiles(engine.read_keys, visitor_id, owner.id if owner.kind == "c" else None)
    old = await preferences.load(engine.redis, owner)
    new = Declared.of(body, now, old)
    ttl = settings.customer_ttl_s if owner.kind == "c" else settings.visitor_ttl_s
    await preferences.save(engine.redis, owner, new, old, ttl_s=ttl, watchers_max=settings.watchers_max)
    return json_response(_view(request, visitor_id, owner, new, visitor, customer))


async def _record_choices(request: Request, visitor_id: str, owner: Owner, chosen: dict[str, bool], source: str,
                          now: float) -> None:
    """Each channel choice as the consent event a site would send (purpose email, push or on_site):
    logged, replayed, exported and decided by ``engine.profiles.consent`` like any other. Sent with
    Global Privacy Control, they carry it, as events do."""
    gpc = request.headers.get("sec-gpc", "").strip() == "1"
    customer_id = owner.id if owner.kind == "c" else None
    events = [Event(event_id=f"pref-{uuid.uuid4().hex}", type="consent", visitor_id=visitor_id,
                    customer_id=customer_id, ts=now, rt=now, gpc=gpc,
                    properties={"purpose": channel, "granted": granted, "source": source})
              for channel, granted in chosen.items()]
    try:
        await request.app.state.sink.submit(events)
    except SinkUnavailable as exc:
        raise ApiError(503, f"contact choices not stored, retry: {exc}",
                       [{"field": "channels", "message": "not stored"}]) from None
