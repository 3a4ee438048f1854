"""Prometheus metrics: request latency per route, event counts, the process and runtime families,
and what the engine exports (``engine.observe``: model, rules, degraded answers, Redis, apply queue,
triggers).

With several uvicorn workers the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` and /metrics aggregates
every worker's numbers (prometheus-client's multiprocess mode); per-process families (process,
runtime, degraded answers, Redis latency, apply queue) are then left out, since one scrape reaches
one worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.limits import ASGIApp, Message, Receive, Scope, Send
from engine import tasks
from engine.ingest.writer import ApplyWriter
from engine.observe import EngineCollector
from engine.runtime import Engine

# How long a scrape waits for what lives in Redis (trigger counters, the log checkpoint).
REFRESH_TIMEOUT_S = 1.0
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Process-wide, like the tasks it counts (the retrainer runs outside any app); each app's
# registry exports it.
TASK_FAILURES = Counter("vitrine_task_failures_total", "Failures of a background task, by task name; each "
                        "is retried with backoff, only the first of a streak is logged", ["task"], registry=None)


def _count_task_failures(task: str, failures: int) -> None:
    TASK_FAILURES.labels(task).inc(failures)


def export_task_failures() -> None:
    """Count engine.tasks' failures in ``vitrine_task_failures_total`` (idempotent)."""
    tasks.count_failures_with(_count_task_failures)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app, so tests can build many apps
        kw = {"registry": self.registry}
        self.latency = Histogram("vitrine_http_request_duration_seconds", "Request latency by route",
                                 ["route", "method", "status"], buckets=BUCKETS, **kw)
        self.events_accepted = Counter("vitrine_events_accepted_total", "Events accepted", **kw)
        self.events_rejected = Counter("vitrine_events_rejected_total", "Events rejected", **kw)
        stored_lists = Counter("vitrine_stored_lists_total", "Personal requests that could use a stored for-you "
                               "list, by whether one matched (else the list was scored)", ["matched"], **kw)
        self._stored_list = {True: stored_lists.labels("true"), False: stored_lists.labels("false")}
        self.registry.register(TASK_FAILURES)
        export_task_failures()
        self.rate_limited = Counter("vitrine_rate_limited_total", "Requests (or events, for visitor_events) "
                                    "refused by a rate limit, by limit", ["limit"], **kw)
        # The client library's own process, platform and gc collectors: they read /proc and the
        # interpreter at scrape time, so one instance serves every registry.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.engine: EngineCollector | None = None

    def watch(self, engine: Callable[[], Engine | None], writer: Callable[[], ApplyWriter | None]) -> None:
        """Export the engine's state (``engine.observe``) once the app has started it."""
        self.engine = EngineCollector(engine, writer)
        self.registry.register(self.engine)

    def observe_stored_list(self, matched: bool) -> None:
        self._stored_list[matched].inc()

    def observe_rate_limited(self, limit: str, count: int) -> None:
        self.rate_limited.labels(limit).inc(count)

    async def render(self) -> Response:
        registry = self.registry
        if self.engine is not None:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await self.engine.refresh()
            except TimeoutError:
                pass  # the last values read stay
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            if self.engine is not None:
                registry.register(_Shared(self.engine))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _Shared(Collector):
    """The engine's families that every worker of a multiprocess server reports alike."""

    def __init__(self, engine: EngineCollector) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        return self._engine.families(local=False)


class LatencyMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it sits on the hot path of every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(path, scope["method"], f"{status // 100}xx").observe(
                time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    return await request.app.state.metrics.render()
