"""JSON responses through orjson, and the one shape every error has."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


class JsonBytesResponse(Response):
    """JSON already serialised, its two headers built directly: Starlette's general constructor
    (render, media type and charset checks, a header scan) is work repeated on every recommendation."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        if headers:
            self.init_headers(headers)
        else:
            self.raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonBytesResponse(orjson.dumps(payload), status_code, headers)


def error_response(status_code: int, message: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """``{"error": message, "errors": [{"field", "message"}]}``: the field is always named."""
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return json_response(body, status_code, headers)


def error_body(message: str, errors: list[dict[str, str]]) -> bytes:
    """The error shape as bytes, for answers written below the app (api.server)."""
    return orjson.dumps({"error": message, "errors": errors})


class ApiError(Exception):
    """Raised by routes for a 4xx; turned into ``error_response`` by the app's handler."""

    def __init__(self, status_code: int, message: str, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = errors
        self.headers = headers


# The HTTP limits' answers, each in the error shape above and naming the field in `errors`; for
# the OpenAPI description. Which routes can give which: 429 every site and admin route (and
# POST /v1/events per event, see api.routes.events); 415 the routes with a JSON body; 408, 413
# and 431 any request.
REQUEST_TIMEOUT = 408
BODY_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415
RATE_LIMITED = 429
HEADERS_TOO_LARGE = 431
LIMIT_RESPONSES: dict[int, dict[str, str]] = {
    REQUEST_TIMEOUT: {"field": "headers | body", "description": "The request's head did not arrive within "
                      "VITRINE_HEADER_TIMEOUT_S, or its body within VITRINE_BODY_TIMEOUT_S; the connection is closed."},
    BODY_TOO_LARGE: {"field": "body", "description": "The body is larger than VITRINE_MAX_BODY_BYTES."},
    UNSUPPORTED_MEDIA_TYPE: {"field": "content-type", "description": "The body is not sent as application/json "
                             "(POST /v1/events also takes text/plain, for navigator.sendBeacon)."},
    RATE_LIMITED: {"field": "client_address | x-api-key", "description": "A rate limit was reached; the "
                   "Retry-After header gives the seconds to wait."},
    HEADERS_TOO_LARGE: {"field": "headers", "description": "The request line and headers are larger than "
                        "VITRINE_MAX_HEADER_BYTES; the connection is closed."},
}
