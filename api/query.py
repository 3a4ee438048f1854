"""Request input turned into values or field-named 4xx errors: JSON bodies, and query strings
parsed by one pydantic model per route.

FastAPI's per-parameter machinery re-inspects annotations on every call, which cost more CPU than
the rest of a recommendation for a handful of query parameters; validating one pydantic model is
a small fraction of that and gives the same field-named 422s. ``openapi_parameters`` keeps the
routes documented.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from api.responses import UNSUPPORTED_MEDIA_TYPE, ApiError
from engine.events.fields import field_errors
from engine.events.schema import ID_PATTERN

M = TypeVar("M", bound=BaseModel)


def require_json(request: Request, *, beacon: bool = False) -> None:
    """A 415 naming ``content-type`` unless the body is sent as JSON. ``beacon``: text/plain too,
    which is what navigator.sendBeacon sends for a string (any other type would need a CORS
    preflight, which beacons cannot make); the body must still be JSON."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (beacon and media == "text/plain"):
        return
    expected = "application/json or text/plain" if beacon else "application/json"
    got = f"not {media}" if media else "no Content-Type was sent"
    raise ApiError(UNSUPPORTED_MEDIA_TYPE, f"send the body as {expected} ({got})",
                   [{"field": "content-type", "message": f"must be {expected}"}])


def json_body(body: bytes, expected: str) -> Any:
    """The parsed body, or a 400 that says what to send (``expected``)."""
    if not body.strip():
        raise ApiError(400, f"empty body: send {expected}", [{"field": "body", "message": "is empty"}])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}", [{"field": "body", "message": "is not valid JSON"}]) from None


def invalid_request(errors: list[dict[str, str]]) -> ApiError:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ApiError(422, f"invalid request: {summary}", errors)


def parse_query(model: type[M], request: Request, **extra: Any) -> M:
    """The route's query (plus path values in ``extra``) as ``model``, or a 422 naming each field.
    A repeated name keeps its last value. ``request.query_params`` parses the query string once per
    request (cached on the request), whether FastAPI's handler or this call asks first."""
    try:
        return model.model_validate(dict(request.query_params.items(), **extra))
    except ValidationError as exc:
        raise invalid_request(field_errors(exc, whole="request")) from None


def parse_body(model: type[M], raw: bytes, expected: str) -> M:
    """A JSON body as ``model``: a 400 saying what to send (``expected``) when it is empty or not
    JSON, a 422 naming each field when it does not fit."""
    json_body(raw, expected)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_request(field_errors(exc)) from None


def openapi_parameters(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """OpenAPI parameters documenting ``model``'s fields: in the query, or in the path for ``path``."""
    schema = model.model_json_schema()
    required = set(schema.get("required", [])) | set(path)
    return [{"name": name, "in": "path" if name in path else "query", "required": name in required,
             "schema": _without_null(prop), **({"description": prop["description"]} if "description" in prop else {})}
            for name, prop in schema["properties"].items()]


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its ``null`` alternative: a parameter is absent, never null."""
    prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
    options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        prop.update(options[0])
    elif options:
        prop["anyOf"] = options
    return prop


def path_id(request: Request, name: str) -> str:
    """A path parameter that names a visitor, customer or person, checked as event ids are."""
    value = request.path_params[name]
    if not re.fullmatch(ID_PATTERN, value):
        raise ApiError(422, f"invalid {name.replace('_', ' ')}", [{"field": name, "message": "invalid characters"}])
    return value
