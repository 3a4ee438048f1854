"""JSON responses through orjson, and the one shape every error has."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


class JsonBytesResponse(Response):
    """JSON already serialised, its two headers built directly: Starlette's general constructor
    (render, media type and charset checks, a header scan) costs ~2 µs on every recommendation."""

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


class ApiError(Exception):
    """Raised by routes for a 4xx; turned into ``error_response`` by the app's handler."""

    def __init__(self, status_code: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = errors
