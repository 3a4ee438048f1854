"""Which shop the running code works for, in a deployment of several (config.py: the tenants
file). A process serving them all sets it per request (api.tenants); the tasks a request starts
inherit it (``contextvars``). A process working for one shop (a command or a worker run with
``VITRINE_TENANT``) sets it once for the whole process. Redis key names
(engine.store.keys) and log lines (engine.logs) carry it; with none, names are a one-shop
deployment's."""

from __future__ import annotations

from contextvars import ContextVar

CURRENT: ContextVar[str | None] = ContextVar("vitrine_tenant", default=None)
_process: list[str | None] = [None]  # the shop of a process that works for one (a list: set without `global`)


def work_for(tenant: str | None) -> None:
    """This whole process works for ``tenant`` (its threads and spawned tasks included)."""
    _process[0] = tenant


def current() -> str | None:
    return CURRENT.get() or _process[0]


def key_prefix() -> str:
    """What the current shop's Redis keys start with: ``t.<tenant>:``, outside any hash tag."""
    tenant = current()
    return f"t.{tenant}:" if tenant else ""
