"""JSON responses through orjson, and the one shape every error has."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json",
                    headers=headers)


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
