"""The first-party visitor cookie: read it, or issue one when the site has none."""

from __future__ import annotations

import re
import secrets

from fastapi import Request, Response

from engine.events.schema import ID_PATTERN

COOKIE = "vt_vid"
_VALID = re.compile(ID_PATTERN)


def cookie_visitor(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and _VALID.match(value) else None


def new_visitor_id() -> str:
    """16 URL-safe characters (96 random bits) starting with a letter or a digit, as ``ID_PATTERN``
    wants: one in 32 of ``token_urlsafe``'s starts with ``-`` or ``_``, which got the visitor's events
    rejected and the cookie ignored (a new id on every request)."""
    while not (visitor_id := secrets.token_urlsafe(12))[0].isalnum():
        pass
    return visitor_id


def with_visitor_cookie(request: Request, response: Response, issued: str | None) -> Response:
    """``response``, carrying the cookie when a visitor id was just issued. Secure when the setting
    says so or the request came over HTTPS (the scheme uvicorn sets, from X-Forwarded-Proto when
    the proxy is trusted: VITRINE_FORWARDED_ALLOW_IPS)."""
    if issued:
        settings = request.app.state.settings
        secure = settings.cookie_secure or request.scope.get("scheme") == "https"
        set_visitor_cookie(response, issued, max_age_s=settings.visitor_ttl_s, secure=secure)
    return response


def set_visitor_cookie(response: Response, visitor_id: str, *, max_age_s: int, secure: bool) -> None:
    """HttpOnly: the page never needs to read it (the API answers with the visitor id), so a
    script injected into the shop cannot take it. SameSite=Lax: not sent on other sites' requests."""
    response.set_cookie(COOKIE, visitor_id, max_age=max_age_s, path="/", samesite="lax",
                        secure=secure, httponly=True)


def request_visitor(request: Request, visitor_id: str | None) -> tuple[str, str | None]:
    """The visitor a read is for: the query's, else the cookie's, else a new one.

    Returns (visitor id, the id if it was just issued, to be set as the cookie)."""
    if visitor_id is not None:
        return visitor_id, None
    from_cookie = cookie_visitor(request)
    if from_cookie is not None:
        return from_cookie, None
    issued = new_visitor_id()
    return issued, issued
