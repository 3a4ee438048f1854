"""What every console page does first: find the session, check the CSRF token, render."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from api.responses import ApiError
from api.web.console.sessions import Session, csrf_ok, current_session
from api.web.pages import form, render


class SignedOut(Exception):
    """Raised by ``signed_in``; answered by a redirect to the sign-in page (``routes.py``)."""


async def signed_in(request: Request) -> Session:
    session = await current_session(request)
    if session is None:
        raise SignedOut
    return session


async def posted(request: Request) -> tuple[Session, dict[str, str]]:
    """A form post's session and fields; a 403 unless it carries the session's CSRF token."""
    session = await signed_in(request)
    fields = await form(request)
    if not csrf_ok(session, fields.get("csrf")):
        raise ApiError(403, "the form's CSRF token does not match this session: reload the page",
                       [{"field": "csrf", "message": "does not match"}])
    return session, fields


async def scripted(request: Request) -> Session:
    """A script call's session; a 403 unless ``X-CSRF-Token`` is the session's."""
    session = await signed_in(request)
    if not csrf_ok(session, request.headers.get("x-csrf-token")):
        raise ApiError(403, "X-CSRF-Token does not match this session", [{"field": "x-csrf-token",
                                                                           "message": "does not match"}])
    return session


def page(request: Request, session: Session, name: str, status: int = 200, **context: Any) -> Response:
    return render(request, f"console/{name}", {"csrf": session.csrf, **context}, status)


def to_signin() -> Response:
    return RedirectResponse("/console/signin", status_code=303)
