"""The customer-relationship endpoints (admin): the single customer view, merging customer ids of
one person, and the data subject rights: export everything held on a person, or erase it."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_admin
from api.openapi import doc, ok, path_parameter, request_body
from api.query import invalid_request, parse_body, path_id, require_json
from api.responses import ApiError, json_response
from engine.customers import audit, people
from engine.customers.merge import MergeContention, MergeRefused, merge_recorded
from engine.customers.view import customer_view
from engine.events.schema import ID_PATTERN
from engine.triggers.forget import forget
from models import customer_value

router = APIRouter(dependencies=[Depends(require_admin)])
REQUESTED_BY = re.compile(r"^[\w .:@#/-]{1,100}$")


class CustomerView(BaseModel):
    customer_id: str
    identity: dict[str, Any] = Field(description="Linked cookies (devices), first and last seen, first and last order.")
    consent: dict[str, str] = Field(description="Per purpose (profiling, email, push, on_site): granted, withdrawn or "
                                                "not_given.")
    rfm: dict[str, Any] = Field(description="Recency (days), frequency, monetary, average basket, inter-purchase days.")
    category_affinity: dict[str, float]
    brand_affinity: dict[str, float]
    traits: dict[str, str]
    segments: list[str] = Field(description="The segments they are in now (engine/merch/README.md).")
    scores: dict[str, Any] | None = Field(description="P(buys within the horizon), expected orders and revenue, churn "
                                                      "risk band and reasons; null before `vitrine train` or a first order.")
    pressure: dict[str, Any] = Field(description="Block impressions and items shown over the last 1, 7 and 30 days.")
    recent_items: list[str]
    purchases: dict[str, int]
    declared_preferences: dict[str, Any] | None = Field(description="Favourite categories and brands, price "
                                                        "alerts, watches, wishlist and contact choices; null: none.")


class Export(BaseModel):
    exported_at: float
    ids: dict[str, list[str]] = Field(description="Visitor ids, customer ids (the surviving one first, then those "
                                                   "merged into it) and hashed emails.")
    merges: list[dict[str, Any]] = Field(description="Each customer id merged into theirs: when, by whom, "
                                                     "automatically (a shared hashed email) or not.")
    profiles: list[dict[str, Any]]
    customer: dict[str, Any] | None
    exposure: dict[str, Any]
    preferences: dict[str, Any] = Field(description="Declared preferences per record (`v:ID`, `c:ID`).")
    events: list[dict[str, Any]] = Field(description="Their events from the log, consent events included.")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # the JSON types its schema states, no coercion

    into: str = Field(pattern=ID_PATTERN, description="The customer id that survives (or, if it was merged "
                                                      "into another before, that one).")
    from_: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        alias="from", min_length=1, description="The customer ids that are the same person; at most "
                                                "`VITRINE_MERGE_MAX_IDS`.")


class MergeResult(BaseModel):
    into: str = Field(description="The surviving customer id.")
    merged: list[str] = Field(description="Ids merged by this call; their events and reads now go to `into`.")
    already: list[str] = Field(description="Ids merged into `into` before: nothing was done for them.")


class Erased(BaseModel):
    ids: dict[str, list[str]]
    keys_deleted: int
    trigger_entries_removed: int = Field(description="Entries naming them removed from the triggers' shared keys: "
                                                     "occurrences, report sets, streams, outboxes, dead letters.")
    log_segments_rewritten: int
    log_segments_pending: int = Field(description="Segments still open or not yet applied: their lines are skipped "
                                                  "by every reader now and rewritten by the hourly retention pass.")


def _requested_by(request: Request) -> str:
    """Who asked, for the audit log: an operator or ticket reference, never personal data."""
    value = request.headers.get("x-requested-by", "admin")
    if not REQUESTED_BY.fullmatch(value):
        raise ApiError(400, "invalid X-Requested-By header",
                       [{"field": "X-Requested-By", "message": "1-100 letters, digits, spaces or .:@#/-"}])
    return value


@router.get("/v1/customers/{customer_id}", **doc(
    "admin", "The single customer view", {
        200: ok(CustomerView, "Identity, consent, RFM, affinities, segments, scores and pressure."),
        404: "No profile for this customer.",
        422: "`customer_id` has characters an id cannot have.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("customer_id", ID_PATTERN, "The shop's customer id.", "c-42")]))
async def get_customer(request: Request) -> Response:
    customer_id = path_id(request, "customer_id")
    engine = request.app.state.engine
    view = await customer_view(engine.redis, customer_id, customer_value.load(engine.settings.models_dir), time.time(),
                               consent_required=engine.settings.consent_required,
                               segments=engine.rules.current.segments)
    if view is None:
        raise ApiError(404, f"no profile for customer {customer_id!r}")
    return json_response(view)


@router.get("/v1/people/{person_id}/export", **doc(
    "admin", "Everything held on a person, as one document", {
        200: ok(Export, "Profiles, linked ids, exposure and experiment state, and their logged events."),
        404: "Nothing is held under this id.",
        422: "`person_id` has characters an id cannot have.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("person_id", ID_PATTERN, "A visitor id or a customer id.", "c-42")]))
async def export_person(request: Request) -> Response:
    person_id = path_id(request, "person_id")
    by = _requested_by(request)
    engine = request.app.state.engine
    settings = engine.settings
    person = await people.find(engine.redis, person_id)
    now = time.time()
    document = await people.export(engine.redis, person, log_dir=settings.log_dir,
                                   session_timeout_s=settings.session_timeout_s, lookup=engine.catalogue.info, now=now,
                                   segments=engine.rules.current.segments)
    if not document["profiles"] and document["customer"] is None and not document["events"]:
        raise ApiError(404, f"nothing is held under {person_id!r}")
    audit.record(settings.data_dir, "export", by, person.visitor_ids, person.customer_ids, now)
    return json_response(document)


@router.delete("/v1/people/{person_id}", **doc(
    "admin", "Erase a person: their keys, their logged events, their row in the next model", {
        200: ok(Erased, "Erased (also when nothing was held: erasing is idempotent); only an audit record remains."),
        422: "`person_id` has characters an id cannot have.",
        503: "Redis is unavailable: retry.",
    }, parameters=[path_parameter("person_id", ID_PATTERN, "A visitor id or a customer id.", "c-42")]))
async def erase_person(request: Request) -> Response:
    person_id = path_id(request, "person_id")
    by = _requested_by(request)
    engine = request.app.state.engine
    settings = engine.settings
    person = await people.find(engine.redis, person_id)
    now = time.time()
    done = await people.erase(engine.redis, person, log_dir=settings.log_dir, dedup_window_s=settings.dedup_window_s,
                              now=now)
    forgotten = await forget(engine.redis, person.visitor_ids, person.customer_ids, engine.rules.current.rules.triggers)
    audit.record(settings.data_dir, "erase", by, person.visitor_ids, person.customer_ids, now,
                 keys_deleted=done.keys_deleted, trigger_entries_removed=forgotten)
    return json_response({"ids": {"visitor_ids": person.visitor_ids, "customer_ids": person.customer_ids},
                          "keys_deleted": done.keys_deleted, "trigger_entries_removed": forgotten,
                          "log_segments_rewritten": len(done.segments_rewritten),
                          "log_segments_pending": len(done.segments_pending)})


@router.post("/v1/customers/merge", **doc(
    "admin", "Merge customer ids known to be one person", {
        200: ok(MergeResult, "Merged (also when every id was merged before: merging is idempotent)."),
        400: "The body is not JSON, or `X-Requested-By` is invalid.",
        404: "No profile for one of the ids (`errors` name `into` or `from[i]`).",
        409: "One of the ids was erased.",
        415: "The body is not sent as application/json.",
        422: "A field is invalid: an id with characters an id cannot have, `into` in `from`, too many ids.",
        503: "Redis is unavailable, or events kept changing these profiles: retry.",
    }, body=request_body(MergeRequest, {"two accounts": {"into": "c-42", "from": ["c-77"]}})))
async def merge_customers(request: Request) -> Response:
    """The survivor gets the others' orders, revenue, affinities, cookies and traits (its own win),
    the most restrictive consent; their ids become aliases of it (engine/customers/README.md)."""
    require_json(request)
    by = _requested_by(request)
    body = parse_body(MergeRequest, await request.body(),
                      "{\"into\": \"<customer id>\", \"from\": [\"<customer id>\", ...]}")
    engine = request.app.state.engine
    cap = engine.settings.merge_max_ids
    if len(body.from_) > cap:
        raise invalid_request([{"field": "from", "message": f"at most {cap} ids (VITRINE_MERGE_MAX_IDS)"}])
    try:
        result = await merge_recorded(engine.redis, engine.settings, body.into, body.from_, by=by, auto=False)
    except MergeRefused as exc:
        raise ApiError(exc.status, str(exc), [{"field": exc.field, "message": exc.message}]) from None
    except MergeContention:
        raise ApiError(503, "events kept changing these profiles: retry") from None
    return json_response({"into": result.into, "merged": result.merged, "already": result.already})
