"""PlainRoute: the request goes straight to the endpoint, and only endpoints that take nothing else
may use it (a declared parameter would silently never be filled)."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient

from api.plain_route import PlainRoute


def test_the_endpoint_gets_the_request_and_answers_itself() -> None:
    router = APIRouter(route_class=PlainRoute)

    @router.get("/echo/{name}")
    async def echo(request: Request) -> Response:
        return Response(f"{request.path_params['name']}:{request.query_params.get('q')}")

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/echo/a?q=b").text == "a:b"
    assert "/echo/{name}" in app.openapi()["paths"]


async def with_query(request: Request, q: str) -> Response:
    return Response(q)


async def with_dependency(request: Request, user: str = Depends(lambda: "x")) -> Response:
    return Response(user)


async def without_request() -> Response:
    return Response()


@pytest.mark.parametrize("endpoint", [with_query, with_dependency, without_request])
def test_an_endpoint_that_declares_anything_but_the_request_is_refused(endpoint) -> None:
    with pytest.raises(TypeError, match="takes the Request only"):
        PlainRoute("/x", endpoint)
