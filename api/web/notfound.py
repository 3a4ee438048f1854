"""The HTML 404 page of the shop and the console. API paths (``/v1/``, the snippet, assets) keep
the JSON error a script expects."""

from __future__ import annotations

from fastapi import Request, Response

from api.web.pages import render
from api.web.storefront import shop_page

MACHINE_PATHS = ("/v1/", "/sdk/", "/assets/")


def not_found(request: Request, message: str = "There is no page at this address.") -> Response | None:
    """The 404 page for a missing page of the console or the demo shop; None for an API path or
    when neither is served (the caller answers JSON)."""
    path = request.url.path
    settings = request.app.state.settings
    if path.startswith(MACHINE_PATHS):
        return None
    if settings.console and (path == "/console" or path.startswith("/console/")):
        return render(request, "console/notfound.html", {"csrf": None, "title": "Not found", "message": message},
                      404)
    if settings.demo_storefront:
        return shop_page(request, "notfound.html", 404, title="Not found", message=message)
    return None
