"""API keys: an admin key for catalogue, profiles and models; optional public site keys for the
endpoints a storefront calls from the browser. And who may name a customer: the admin key, or a
customer token signed by the site's backend (engine.profiles.tokens)."""

from __future__ import annotations

import hmac

from fastapi import Request

from api.responses import ApiError
from engine.events.schema import FieldError
from engine.profiles.tokens import verify_customer_token
from engine.settings import Settings


def _presented_key(request: Request) -> str | None:
    """X-API-Key, else an ``Authorization: Bearer`` token. One pass over the raw headers (ASGI
    names are lower case): every site request asks, and Starlette's lookups scan them twice."""
    authorization = None
    for name, value in request.scope["headers"]:
        if name == b"x-api-key" and value:
            return value.decode("latin-1")
        if name == b"authorization" and authorization is None:
            authorization = value
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        return authorization[7:].strip().decode("latin-1")
    return None


def _matches(key: str, allowed: list[str]) -> bool:
    return any(hmac.compare_digest(key.encode(), a.encode()) for a in allowed)


# Both checks are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a thread
# pool, a thread hop on every request of the hot path for a dictionary lookup. Both apply the rate
# limits too (api.ratelimit): every site and admin route calls one of them first.


async def require_admin(request: Request) -> None:
    limits = request.app.state.rate_limits
    admin = limits.settings.admin_key
    key = _presented_key(request)
    if key is not None and admin and _matches(key, [admin]):
        limits.admit_trusted(request.scope)
        return
    if key is not None:
        limits.count_wrong_key(request.scope)
    limits.admit_anonymous(request.scope)
    if key is None:
        raise ApiError(401, "admin API key required (X-API-Key header)")
    raise ApiError(403, "invalid admin API key")


async def require_site(request: Request) -> None:
    """Open to all when no site keys are set; else a site key (or the admin key) is required. A
    key that matches none counts as a wrong key even where none is required (it may be a guess
    at the admin key)."""
    limits = request.app.state.rate_limits
    settings = limits.settings
    key = _presented_key(request)
    if key is None:
        limits.admit_anonymous(request.scope)
        if settings.site_keys:
            raise ApiError(401, "site API key required (X-API-Key header)")
        return
    if settings.admin_key and _matches(key, [settings.admin_key]):
        limits.admit_trusted(request.scope)
        return
    if _matches(key, settings.site_keys):
        limits.admit_anonymous(request.scope)
        limits.admit_site_key(key)
        return
    limits.count_wrong_key(request.scope)
    limits.admit_anonymous(request.scope)
    if settings.site_keys:
        raise ApiError(403, "invalid site API key")


def is_admin(request: Request) -> bool:
    """Whether the caller presented the admin key: a server-to-server call, trusted to name customers."""
    admin = request.app.state.settings.admin_key
    key = _presented_key(request)
    return bool(admin and key and _matches(key, [admin]))


def untrusted_customer(settings: Settings, customer_id: str, token: object) -> FieldError | None:
    """Why a caller without the admin key may not speak for ``customer_id``, or None if it may.

    A customer id alone is a name anyone can type: with it a stranger would read that customer's
    history and traits, or stitch their own cookie to the customer's profile."""
    if not settings.identity_secret:
        return FieldError(field="customer_id", message="needs the admin API key: VITRINE_IDENTITY_SECRET is not "
                                                       "set, so customer tokens are not accepted")
    if token is None:
        return FieldError(field="customer_token", message="is required with customer_id (HMAC-SHA256 of the "
                                                          "customer id with VITRINE_IDENTITY_SECRET, in hex)")
    if not verify_customer_token(settings.identity_secret, customer_id, token):
        return FieldError(field="customer_token", message="does not match customer_id")
    return None


async def require_customer(request: Request, customer_id: str | None, token: str | None) -> None:
    """A read naming ``customer_id`` is a 403 unless the caller proves it may (admin key or token)."""
    if customer_id is None or is_admin(request):
        return
    error = untrusted_customer(request.app.state.settings, customer_id, token)
    if error is not None:
        raise ApiError(403, f"{error.field} {error.message}", [error.model_dump()])
