"""A route class for endpoints that take the ``Request`` and return a ``Response`` themselves.

Such endpoints check and parse their input with plain calls (api.query), yet FastAPI's request
handler still resolves their (empty) dependencies on every call: it reads the query string, the
headers and the cookies into parameter dicts and builds a response object for headers the endpoint
cannot set. ``PlainRoute`` hands the request straight to the endpoint. Routing, exception handlers,
middleware and the OpenAPI description are FastAPI's, as for any ``APIRoute``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class PlainRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        declared = (d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
                    or d.dependencies or d.response_param_name or d.background_tasks_param_name)
        if declared or not d.request_param_name:
            raise TypeError(f"{path}: a PlainRoute endpoint takes the Request only (it parses what it needs)")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint
