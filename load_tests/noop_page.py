"""The storefront bench's no-op: one static page, served by the same server software as the shop
(uvicorn) with the shop pages' caching (``no-store``), so the two differ only by what the shop does.
A module of its own so that the server starts without importing the engine."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE = "VITRINE_BENCH_NOOP_HTML"  # the page's file


def app() -> Starlette:
    html = Path(os.environ[PAGE]).read_text()

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/", page), Route("/index.html", page)])
