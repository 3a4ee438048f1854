"""The web face: the site snippet (``/sdk/vitrine.js``), the demo storefront (``/``, only with
``VITRINE_DEMO_STOREFRONT``) and the merchandiser console (``/console``, ``VITRINE_CONSOLE``).

Pages are rendered on the server (Jinja2) with small scripts on top; every asset ships in this
package. The console is a client of the admin API like any script (api.web.console.admin).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from engine.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Add the web routes after the API's: they never shadow an API route."""
    from api.web import assets, storefront  # noqa: PLC0415 - Jinja2 loads only where pages are served
    from api.web.console import routes as console  # noqa: PLC0415

    from api.web.console.guard import SignedOut, to_signin  # noqa: PLC0415

    app.router.routes.extend(assets.router.routes)
    if settings.console:
        app.router.routes.extend(console.router.routes)
        app.add_exception_handler(SignedOut, lambda request, exc: to_signin())
    if settings.demo_storefront:
        app.router.routes.extend(storefront.router.routes)


def not_found(request: Request) -> Response | None:
    """The HTML 404 page when the path is one of the web pages' (api.web.notfound), else None."""
    from api.web.notfound import not_found as page  # noqa: PLC0415

    return page(request)
