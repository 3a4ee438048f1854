"""Sign in with the admin key, sign out."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from api.responses import ApiError
from api.web.console import sessions
from api.web.pages import form, render

router = APIRouter(include_in_schema=False)


def _form(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = sessions.pre_token(request)
    response = render(request, "console/signin.html", {"pre_csrf": token, "error": error,
                                                       "title": "Sign in"}, status)
    sessions.set_pre_token(request, response, token)
    return response


@router.get("/console")
async def console_home(request: Request) -> Response:
    target = "/console/rules" if await sessions.current_session(request) else "/console/signin"
    return RedirectResponse(target, status_code=303)


@router.get("/console/signin")
async def signin_form(request: Request) -> Response:
    return _form(request)


@router.post("/console/signin")
async def signin(request: Request) -> Response:
    """The admin key, checked and rate limited like an API call's (wrong keys per address)."""
    fields = await form(request)
    expected = request.cookies.get(sessions.PRE_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), fields.get("csrf", "").encode()):
        return _form(request, "The sign-in form expired: please try again.", 403)
    limits = request.app.state.rate_limits
    try:
        if not sessions.key_matches(request, fields.get("admin_key", "")):
            limits.count_wrong_key(request.scope)
            limits.admit_anonymous(request.scope)
            return _form(request, "That is not the admin key.", 403)
        limits.admit_trusted(request.scope)
    except ApiError as exc:  # too many wrong keys from this address
        return _form(request, exc.message, exc.status_code)
    response = RedirectResponse("/console/rules", status_code=303)
    await sessions.open_session(request, response)
    return response


@router.post("/console/signout")
async def signout(request: Request) -> Response:
    response = RedirectResponse("/console/signin", status_code=303)
    await sessions.close_session(request, response)
    return response
