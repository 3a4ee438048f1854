"""HTML responses: Jinja2 templates shipped in the package, and the headers every page carries.

The Content-Security-Policy allows this origin's scripts, styles and images only: no inline
script or style, no eval, no framing. Pages pass data to their scripts in ``data-`` attributes.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from api.web.assets import asset_url, snippet_url

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Environment(loader=PackageLoader("api.web", "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.globals["asset"] = asset_url
templates.globals["snippet_url"] = snippet_url
templates.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def render(request: Request, name: str, context: dict[str, Any], status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """``name`` rendered with ``context`` (plus the request), with the security headers."""
    html = templates.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value of each): the only kind these pages post. Parsed
    with the standard library: no multipart, so no extra dependency."""
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[0] for key, values in parse_qs(body, max_num_fields=20).items()}
