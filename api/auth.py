"""API keys: an admin key for catalogue, profiles and models; optional public site keys for the
endpoints a storefront calls from the browser."""

from __future__ import annotations

import hmac

from fastapi import Request

from api.responses import ApiError


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
