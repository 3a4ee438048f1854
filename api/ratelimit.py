"""Rate limits: per client address, per site key, per admin-key caller, on wrong API keys, and on
events per visitor (settings ``rate_limit_*``).

Rates are written in the notation of the `limits` package ("100/second;3000/minute") and parsed
by it, but counted here, in fixed windows aligned on the clock: each window is one dict, emptied
when the window ends. `limits`' own in-memory storage cost several times more per hit when
compared (see this file's history), and a timer thread keeps rescanning every key it holds: too
much on the hot path of every request. What the limits cost a request end to end:
``python -m load_tests.bench_limits``. Counts are per process: with N uvicorn workers
a client spread over them gets up to N times the limit.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from limits import parse_many

from api.responses import RATE_LIMITED, ApiError
from engine.settings import Settings

# Identifiers one window tracks at most; past it new ones pass uncounted until the window ends
# (an attacker inventing visitor ids must not grow the process without bound).
MAX_TRACKED = 200_000

_clock = time.monotonic
_WRONG_KEYS = "wrong API keys from this client address (every key is refused until the window ends)"


class _Window:
    __slots__ = ("amount", "seconds", "ends", "counts")

    def __init__(self, amount: int, seconds: int) -> None:
        self.amount = amount
        self.seconds = seconds
        self.ends = 0.0
        self.counts: dict[str, int] = {}

    def current(self, now: float) -> dict[str, int]:
        if now >= self.ends:
            self.counts = {}
            self.ends = (now // self.seconds + 1) * self.seconds
        return self.counts


class Rate:
    """One limit (one or more windows: all must have room), counted per identifier."""

    def __init__(self, spec: str) -> None:
        items = parse_many(spec)
        self._windows = tuple(_Window(item.amount, item.get_expiry()) for item in items)
        self.text = " and ".join(f"{item.amount} per {_period(item.get_expiry())}" for item in items)

    def hit(self, ident: str) -> bool:
        """Count one for ``ident`` if every window has room; False (nothing counted) if not."""
        now = _clock()
        windows = self._windows
        for window in windows:
            if now >= window.ends:
                window.current(now)
            if window.counts.get(ident, 0) >= window.amount:
                return False
        for window in windows:
            counts = window.counts
            count = counts.get(ident)
            if count is not None:
                counts[ident] = count + 1
            elif len(counts) < MAX_TRACKED:
                counts[ident] = 1
        return True

    def take(self, ident: str, wanted: int) -> int:
        """How many of ``wanted`` fit in every window (0..wanted); those are counted."""
        now = _clock()
        granted = wanted
        for window in self._windows:
            granted = min(granted, max(window.amount - window.current(now).get(ident, 0), 0))
        if granted:
            for window in self._windows:
                counts = window.counts
                if ident in counts or len(counts) < MAX_TRACKED:
                    counts[ident] = counts.get(ident, 0) + granted
        return granted

    def exhausted(self, ident: str) -> bool:
        """Whether a window is full for ``ident`` (nothing counted)."""
        now = _clock()
        return any(window.current(now).get(ident, 0) >= window.amount for window in self._windows)

    def retry_after(self, ident: str) -> int:
        """Whole seconds until every full window of ``ident`` has ended (at least 1)."""
        now = _clock()
        waits = [window.ends - now for window in self._windows
                 if window.current(now).get(ident, 0) >= window.amount]
        return max(1, math.ceil(max(waits, default=1)))


def _period(seconds: int) -> str:
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % length == 0:
            count = seconds // length
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"  # pragma: no cover - parse_many gives whole seconds


def client_address(scope: MutableMapping[str, Any]) -> str:
    """Who a request counts against: the peer's address (or, from a trusted proxy, the
    X-Forwarded-For one uvicorn put in the scope). An IPv6 client counts by its /64: one
    subscriber is given a whole /64 and could otherwise change address at every request."""
    client = scope.get("client")
    if not client:
        return "-"
    host: str = client[0]
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return f"{ipaddress.IPv6Network((address, 64), strict=False).network_address}/64"


class RateLimits:
    """The limits of one app, from its settings; each is None when turned off."""

    def __init__(self, settings: Settings, observe: Callable[[str, int], None] = lambda limit, count: None) -> None:
        def rate(spec: str | None) -> Rate | None:
            return Rate(spec) if settings.rate_limits and spec else None

        self.address = rate(settings.rate_limit_address)
        self.site_key = rate(settings.rate_limit_site_key)
        self.trusted = rate(settings.rate_limit_trusted)
        self.failures = rate(settings.rate_limit_admin_failures)
        self.visitor_events = rate(settings.rate_limit_visitor_events)
        self.settings = settings  # the auth checks read both with one lookup of the app's state
        self._observe = observe

    def admit_anonymous(self, scope: MutableMapping[str, Any]) -> None:
        """A caller without the admin key: its address's limit."""
        rate = self.address
        if rate is not None:
            client = scope.get("client")
            address = client[0] if client and ":" not in client[0] else client_address(scope)
            if not rate.hit(address):
                raise self._limited(rate, address, "client_address", "requests from this client address")

    def admit_site_key(self, key: str) -> None:
        if self.site_key is not None and not self.site_key.hit(key):
            raise self._limited(self.site_key, key, "x-api-key", "requests with this site key", "site_key")

    def admit_trusted(self, scope: MutableMapping[str, Any]) -> None:
        """A caller with the admin key: refused while its address is locked out for wrong keys,
        else its own (higher) limit."""
        if self.failures is None and self.trusted is None:
            return
        address = client_address(scope)
        if self.failures is not None and self.failures.exhausted(address):
            raise self._limited(self.failures, address, "x-api-key", _WRONG_KEYS, "admin_failures")
        if self.trusted is not None and not self.trusted.hit(address):
            raise self._limited(self.trusted, address, "client_address",
                                "admin-key requests from this client address", "trusted")

    def count_wrong_key(self, scope: MutableMapping[str, Any]) -> None:
        """A key that matches none: counted; past the limit the address is locked out (429)."""
        if self.failures is not None:
            address = client_address(scope)
            if not self.failures.hit(address):
                raise self._limited(self.failures, address, "x-api-key", _WRONG_KEYS, "admin_failures")

    def events_over(self, visitors: Iterable[str]) -> tuple[set[int], int]:
        """Of events by these visitor ids (in order), the positions past each visitor's limit,
        and the seconds to wait (0 when none is)."""
        if self.visitor_events is None:
            return set(), 0
        positions: dict[str, list[int]] = {}
        for position, visitor in enumerate(visitors):
            positions.setdefault(visitor, []).append(position)
        over: set[int] = set()
        wait = 0
        for visitor, where in positions.items():
            granted = self.visitor_events.take(visitor, len(where))
            if granted < len(where):
                over.update(where[granted:])
                wait = max(wait, self.visitor_events.retry_after(visitor))
                self._observe("visitor_events", len(where) - granted)
        return over, wait

    def _limited(self, rate: Rate, ident: str, field: str, what: str, label: str = "client_address") -> ApiError:
        wait = rate.retry_after(ident)
        self._observe(label, 1)
        message = f"too many {what}: at most {rate.text}"
        return ApiError(RATE_LIMITED, f"{message}; retry in {wait} s", [{"field": field, "message": message}],
                        headers={"Retry-After": str(wait)})
