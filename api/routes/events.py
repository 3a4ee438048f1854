"""POST /v1/events: one event or a batch, each validated on its own."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from api.auth import is_admin, require_site, untrusted_customer
from api.identity import cookie_visitor, new_visitor_id, with_visitor_cookie
from api.query import json_body, require_json
from api.responses import RATE_LIMITED, ApiError, json_response
from engine.events import Event, FieldError, Rejection, validate_event
from engine.ingest import SinkUnavailable

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


@router.post("/v1/events", dependencies=[Depends(require_site)])
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
        if isinstance(result, Event) and result.customer_id is not None and not admin:
            error = untrusted_customer(settings, result.customer_id, token)
            if error is not None:
                field = f"{prefix}.{error.field}" if prefix else error.field
                result = Rejection(index=index, event_id=result.event_id,
                                   errors=[FieldError(field=field, message=error.message)])
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
