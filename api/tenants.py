"""Several shops in one process: ``/t/{tenant}/...`` goes to that shop's own app.

Each shop (engine.tenants) gets the app ``create_app`` makes for a single shop, with its own engine,
keys, metrics and data, so every route behaves as in a one-shop deployment and an admin key of one
shop is simply not a key of another's app. A shop's app starts at its first request (its model,
rules and catalogue load then) and, past ``VITRINE_TENANT_MEMORY_MB``, the shops least recently
asked for are stopped until they are asked for again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from api.responses import error_body
from engine import logs
from engine.tenants import CURRENT
from engine.tenants import config as tenants
from engine.settings import Settings

log = logging.getLogger(__name__)
PREFIX = "/t/"


@dataclass
class _Shop:
    settings: Settings
    app: ASGIApp | None = None
    stack: contextlib.AsyncExitStack | None = None
    last_used: float = 0.0
    in_flight: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TenantRouter:
    """The ASGI app of a deployment with a tenants file."""

    def __init__(self, shops: dict[str, Settings], memory_mb: int = 0) -> None:
        self._shops = {tenant: _Shop(settings) for tenant, settings in shops.items()}
        self._memory_bytes = memory_mb * 1024 * 1024

    def running(self) -> list[str]:
        """The shops whose app is started, least recently used first."""
        return [t for t, s in sorted(self._shops.items(), key=lambda kv: kv[1].last_used) if s.app is not None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope["path"]
        if scope["type"] == "http" and path == "/health":  # the process answers; each shop has its /t/<tenant>/ready
            await _answer(send, 200, b'{"status": "ok"}')
            return
        tenant, _, _ = path[len(PREFIX):].partition("/") if path.startswith(PREFIX) else ("", "", "")
        shop = self._shops.get(tenant)
        if shop is None:
            if scope["type"] == "http":
                message = f"unknown tenant {tenant!r}" if tenant else "no tenant: paths are /t/<tenant>/..."
                await _answer(send, 404, error_body(message, [{"field": "tenant", "message": message}]))
            return
        root = scope.get("root_path", "") + PREFIX + tenant
        shop.in_flight += 1
        named = CURRENT.set(tenant)  # the shop's background tasks, started below, inherit it
        try:
            app = await self._started(tenant, shop)
            await app({**scope, "root_path": root, "app_root_path": scope.get("app_root_path", root)}, receive, send)
        finally:
            CURRENT.reset(named)
            shop.in_flight -= 1
            shop.last_used = time.monotonic()

    async def _started(self, tenant: str, shop: _Shop) -> ASGIApp:
        shop.last_used = time.monotonic()
        if shop.app is not None:
            return shop.app
        async with shop.lock:
            if shop.app is None:
                app = create_app(shop.settings)
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(app.router.lifespan_context(app))
                shop.app, shop.stack = app, stack
                log.info("tenant %s started", tenant)
                await self._within_budget(keep=tenant)
        return shop.app  # type: ignore[return-value]

    async def _within_budget(self, keep: str) -> None:
        """Stop idle shops, least recently used first, while the process is over its memory budget."""
        if not self._memory_bytes:
            return
        for tenant in self.running():
            if _resident_bytes() <= self._memory_bytes:
                return
            shop = self._shops[tenant]
            if tenant != keep and shop.in_flight == 0 and not _has_triggers(shop):
                await self._stop(tenant, shop)
                log.info("tenant %s stopped: over VITRINE_TENANT_MEMORY_MB", tenant)

    async def _stop(self, tenant: str, shop: _Shop) -> None:
        """The shop's shutdown, as its own work (another shop's request may be evicting it)."""
        named = CURRENT.set(tenant)
        try:
            async with shop.lock:
                stack, shop.app, shop.stack = shop.stack, None, None
                if stack is not None:
                    await stack.aclose()
        finally:
            CURRENT.reset(named)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for tenant, shop in self._shops.items():
                    with contextlib.suppress(Exception):  # one shop failing to stop must not keep the others up
                        await self._stop(tenant, shop)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _has_triggers(shop: _Shop) -> bool:
    """A shop whose rules have triggers stays: its runner sends what falls due, at any hour."""
    engine = getattr(getattr(shop.app, "state", None), "engine", None)
    return engine is not None and bool(engine.rules.current.rules.triggers)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tenants_factory() -> Any:
    """Entry point for uvicorn when a tenants file is set: the shops come from the environment."""
    base = Settings()
    logs.configure(base.log_format)
    return TenantRouter(tenants.load(base), base.tenant_memory_mb)
