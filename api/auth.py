"""API keys: an admin key for catalogue, profiles and models; optional public site keys for the
endpoints a storefront calls from the browser. And who may name a customer: the admin key, or a
customer token signed by the site's backend (engine.identity)."""

from __future__ import annotations

import hmac

from fastapi import Request

from api.responses import ApiError
from engine.events import FieldError
from engine.identity import verify_customer_token
from engine.settings import Settings


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def _matches(key: str, allowed: list[str]) -> bool:
    return any(hmac.compare_digest(key.encode(), a.encode()) for a in allowed)


# Both checks are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a thread
# pool, a thread hop on every request of the hot path for a dictionary lookup.


async def require_admin(request: Request) -> None:
    admin = request.app.state.settings.admin_key
    key = _presented_key(request)
    if key is None:
        raise ApiError(401, "admin API key required (X-API-Key header)")
    if not admin or not _matches(key, [admin]):
        raise ApiError(403, "invalid admin API key")


async def require_site(request: Request) -> None:
    settings = request.app.state.settings
    if not settings.site_keys:
        return
    key = _presented_key(request)
    if key is None:
        raise ApiError(401, "site API key required (X-API-Key header)")
    if not _matches(key, [*settings.site_keys, *([settings.admin_key] if settings.admin_key else [])]):
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
