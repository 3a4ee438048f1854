"""Console sign-in: a session in Redis, its id in a cookie, and a CSRF token per session.

The admin key is typed once and never stored in the browser: the cookie holds a random session id
(``HttpOnly``: no script can read it; ``SameSite=Strict``: no other site's page can send it). The
session remembers a hash of the key it was opened with, so a new admin key closes every session.
Every form carries the session's CSRF token and every script call sends it in ``X-CSRF-Token``.
Sessions live in Redis so that every worker process knows them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from engine.store.console import drop_session, load_session, save_session

COOKIE = "vt_console"
PRE_COOKIE = "vt_console_pre"  # the sign-in form's CSRF token, before there is a session
PATH = "/console"


@dataclass(frozen=True)
class Session:
    session_id: str
    csrf: str


def _key_hash(admin_key: str) -> str:
    return hashlib.sha256(admin_key.encode()).hexdigest()


def _secure(request: Request) -> bool:
    return bool(request.app.state.settings.cookie_secure or request.scope.get("scheme") == "https")


def key_matches(request: Request, presented: str) -> bool:
    admin = request.app.state.settings.admin_key
    return bool(admin) and hmac.compare_digest(presented.encode(), admin.encode())


async def open_session(request: Request, response: Response) -> Session:
    settings = request.app.state.settings
    session = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    await save_session(request.app.state.engine.redis, session.session_id,
                       {"csrf": session.csrf, "key": _key_hash(settings.admin_key)}, settings.console_session_s)
    response.set_cookie(COOKIE, session.session_id, max_age=settings.console_session_s, path=PATH,
                        httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(PRE_COOKIE, path=PATH)
    return session


async def current_session(request: Request) -> Session | None:
    """The request's session, its lifetime renewed; None when signed out, expired or the key changed."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 64:
        return None
    settings = request.app.state.settings
    stored = await load_session(request.app.state.engine.redis, session_id, settings.console_session_s)
    key = stored.get("key", "")
    if not stored or not settings.admin_key or not hmac.compare_digest(key, _key_hash(settings.admin_key)):
        return None
    return Session(session_id, stored["csrf"])


async def close_session(request: Request, response: Response) -> None:
    session_id = request.cookies.get(COOKIE)
    if session_id and len(session_id) <= 64:
        await drop_session(request.app.state.engine.redis, session_id)
    response.delete_cookie(COOKIE, path=PATH)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), presented.encode())  # type: ignore[union-attr]


def pre_token(request: Request) -> str:
    """The sign-in form's token: the one already in the cookie, else a new one."""
    return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)


def set_pre_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(PRE_COOKIE, token, max_age=3600, path=PATH, httponly=True, samesite="strict",
                        secure=_secure(request))
