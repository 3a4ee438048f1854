"""POST /v1/events: one event or a batch, each validated on its own."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.auth import is_admin, require_site, untrusted_customer
from api.visitor_cookie import cookie_visitor, new_visitor_id, with_visitor_cookie
from api.openapi import ErrorBody, doc, error, ok, ref, request_body
from api.query import json_body, require_json
from api.responses import RATE_LIMITED, ApiError, json_response
from engine.events.schema import ID_PATTERN, TYPE_REQUIREMENTS, Event, FieldError, Rejection, validate_event
from engine.ingest.writer import SinkUnavailable

router = APIRouter()


def _parse(body: bytes, max_batch: int) -> tuple[list[Any], bool]:
    """The raw events and whether they came as a batch."""
    payload = json_body(body, "one event object or {\"events\": [...]}")
    if isinstance(payload, dict) and "events" in payload:
        extra = sorted(set(payload) - {"events"})
        if extra:
            raise ApiError(422, "a batch has only an events list",
                           [{"field": name, "message": "unknown field"} for name in extra])
        events = payload["events"]
        if not isinstance(events, list):
            raise ApiError(422, "events must be a list", [{"field": "events", "message": "must be a list"}])
        if not events:
            raise ApiError(422, "events is empty", [{"field": "events", "message": "must not be empty"}])
        if len(events) > max_batch:
            raise ApiError(413, f"batch of {len(events)} events exceeds the limit of {max_batch}",
                           [{"field": "events", "message": f"at most {max_batch} events per request"}])
        return events, True
    if isinstance(payload, dict):
        return [payload], False
    raise ApiError(422, "send one event object or {\"events\": [...]}",
                   [{"field": "body", "message": f"must be an object, not {type(payload).__name__}"}])


class EventIn(Event):
    """An event as a site sends it. Each type needs its own fields (`allOf` below); unknown fields
    are refused."""

    # The request's schema only: the route validates with ``validate_event`` (the times are the
    # server's ``ts`` and ``rt``; ``customer_token`` is checked, then dropped).

    model_config = ConfigDict(json_schema_extra={"allOf": TYPE_REQUIREMENTS})

    visitor_id: str | None = Field(None, pattern=ID_PATTERN, description="Default: the `vt_vid` cookie, else a "
                                   "new id, issued in that cookie and returned as `visitor_id`.")
    timestamp: datetime | None = Field(None, description="When it happened (ISO 8601); the server's time when "
                                       "absent. At most `VITRINE_MAX_FUTURE_SKEW_S` ahead, not before 2000.")
    customer_token: str | None = Field(None, description="With `customer_id` unless the admin key is used: "
                                       "HMAC-SHA256 of the customer id with `VITRINE_IDENTITY_SECRET`, in hex. "
                                       "Checked, then removed: never logged.")
    ts: SkipJsonSchema[float] = 0.0
    rt: SkipJsonSchema[float] = 0.0


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, description="At most `VITRINE_MAX_BATCH_EVENTS` (500; more: "
                                  "413). Each is validated on its own: the good ones are kept.")


class AcceptedEvent(BaseModel):
    index: int
    event_id: str


class EventsResult(BaseModel):
    accepted: list[AcceptedEvent]
    rejected: list[Rejection] = Field(description="Each rejected event and its wrong fields.")
    profiles_updated: bool = Field(description="true: applied to the profiles before the answer; false: logged "
                                               "(durable) and applied shortly.")
    visitor_id: str | None = Field(None, description="The visitor of events sent without one (cookie or new).")


class EventsRejected(ErrorBody):
    """The error shape; when the events were read, also the per-event result (none accepted)."""

    accepted: list[AcceptedEvent] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    profiles_updated: bool = False
    visitor_id: str | None = None


_VIEW = {"event_id": "e-123", "type": "product_view", "visitor_id": "v-42", "item_id": "85123A",
         "timestamp": "2026-11-23T10:15:00Z", "properties": {}}
_PURCHASE = {"event_id": "e-124", "type": "purchase", "visitor_id": "v-42", "revenue": 10.2,
             "items": [{"item_id": "85123A", "quantity": 2, "price": 2.55}, {"item_id": "22423", "price": 5.1}]}
_RESULT = {"accepted": [{"index": 0, "event_id": "e-123"}], "rejected": [], "profiles_updated": True}


@router.post("/v1/events", dependencies=[Depends(require_site)], **doc(
    "site", "Record behaviour events", {
        200: ok(EventsResult, "Every event accepted: written to the durable log.", _RESULT),
        207: ok(EventsResult, "Some events accepted, the others rejected (see `rejected`)."),
        413: "The body is larger than `VITRINE_MAX_BODY_BYTES`, or the batch has more than "
             "`VITRINE_MAX_BATCH_EVENTS` events.",
        422: error("No event accepted: `errors` names each wrong field (`events[3].item_id`).", EventsRejected),
        503: "The events could not be stored (log or Kafka unavailable): send them again, same event ids.",
    }, body=request_body({"oneOf": [ref(EventIn), ref(EventBatch)]},
                     {"product_view": _VIEW, "batch": {"events": [_VIEW, _PURCHASE]}},
                     "One event, or a batch `{\"events\": [...]}`.")))
async def post_events(request: Request) -> Response:
    settings = request.app.state.settings
    require_json(request, beacon=True)
    raw_events, batch = _parse(await request.body(), settings.max_batch_events)
    cookie = cookie_visitor(request)
    issued = None
    if cookie is None and any(isinstance(e, dict) and not e.get("visitor_id") for e in raw_events):
        issued = new_visitor_id()
    now = time.time()
    admin = is_admin(request)
    gpc = request.headers.get("sec-gpc", "").strip() == "1"  # Global Privacy Control: an opt-out
    accepted: list[tuple[int, Event]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_events):
        prefix = f"events[{index}]" if batch else ""
        token = raw.pop("customer_token", None) if isinstance(raw, dict) else None  # never validated nor logged
        result = validate_event(raw, index=index, prefix=prefix, visitor_id=cookie or issued, now=now,
                                max_future_skew_s=settings.max_future_skew_s, gpc=gpc,
                                max_bytes=settings.max_event_bytes)
        if token is not None and not isinstance(token, str):
            problem: FieldError | None = FieldError(field="customer_token", message="must be a string")
        elif isinstance(result, Event) and result.customer_id is not None and not admin:
            problem = untrusted_customer(settings, result.customer_id, token)
        else:
            problem = None
        if problem is not None:
            field = f"{prefix}.{problem.field}" if prefix else problem.field
            result = Rejection(index=index, event_id=result.event_id,
                               errors=[FieldError(field=field, message=problem.message),
                                       *(result.errors if isinstance(result, Rejection) else [])])
        if isinstance(result, Event):
            accepted.append((index, result))
        else:
            rejected.append(result)
    limited, wait = 0, 0
    if accepted and not admin:
        kept, wait = _within_visitor_limits(request, accepted, rejected, batch)
        limited, accepted = len(accepted) - len(kept), kept
    applied = False
    if accepted:
        try:
            applied = await request.app.state.sink.submit([e for _, e in accepted])
        except SinkUnavailable as exc:
            raise ApiError(503, f"events not stored, retry with the same event ids: {exc}",
                           [{"field": "events", "message": "not stored"}]) from None
        request.app.state.metrics.events_accepted.inc(len(accepted))
    if rejected:
        request.app.state.metrics.events_rejected.inc(len(rejected))
    body: dict[str, Any] = {
        "accepted": [{"index": i, "event_id": e.event_id} for i, e in accepted],
        "rejected": [r.model_dump() for r in rejected],
        "profiles_updated": applied,
    }
    visitor = issued or cookie
    if visitor:
        body["visitor_id"] = visitor
    if not accepted:
        status = RATE_LIMITED if limited and limited == len(rejected) else 422
        message = "no event accepted" if batch else "event rejected"
        body = {"error": message, "errors": [e.model_dump() for r in rejected for e in r.errors], **body}
    else:
        status = 207 if rejected else 200
    headers = {"Retry-After": str(wait)} if wait else None
    return with_visitor_cookie(request, json_response(body, status, headers), issued)


def _within_visitor_limits(request: Request, accepted: list[tuple[int, Event]], rejected: list[Rejection],
                           batch: bool) -> tuple[list[tuple[int, Event]], int]:
    """The events within their visitor's limit (VITRINE_RATE_LIMIT_VISITOR_EVENTS), and the
    seconds to wait if some were not. Those are added to ``rejected``, each naming its
    ``visitor_id``: the others of the batch are kept, as for any rejection."""
    limits = request.app.state.rate_limits
    over, wait = limits.events_over(event.visitor_id for _, event in accepted)
    if not over:
        return accepted, 0
    message = f"rate limited: at most {limits.visitor_events.text} events per visitor; retry in {wait} s"
    kept = []
    for position, (index, event) in enumerate(accepted):
        if position in over:
            field = f"events[{index}].visitor_id" if batch else "visitor_id"
            rejected.append(Rejection(index=index, event_id=event.event_id,
                                      errors=[FieldError(field=field, message=message)]))
        else:
            kept.append((index, event))
    rejected.sort(key=lambda r: r.index)
    return kept, wait
