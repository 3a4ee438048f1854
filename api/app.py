"""The FastAPI application: routes, error shapes, limits, metrics, and the engine's lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ClusterCrossSlotError, RedisClusterException, RedisError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from api import __version__
from api.limits import BodySizeLimit
from api.metrics import LatencyMiddleware, Metrics
from api.openapi import TAGS, install as install_openapi
from api.query import invalid_request
from api.ratelimit import RateLimits
from api.responses import ApiError, error_response
from api import web
from api.routes import (admin, blocks, events, health, items, merch, page, people, preferences, recommendations,
                        rerank, rules_file, segments, triggers)
from engine import logs, tasks
from engine.ingest import catchup
from engine.ingest import retention
from engine.ingest.checkpoint import Checkpoint
from engine.events.log import EventLog
from engine.events.fields import field_path
from engine.ingest.writer import EmbeddedSink, EventSink
from engine.runtime import Engine
from engine.settings import Settings
from engine.triggers.outbound import Publisher

log = logging.getLogger(__name__)


def _make_sink(settings: Settings, engine: Engine) -> EventSink:
    if settings.mode == "kafka":
        from streaming.producer import KafkaSink  # noqa: PLC0415 - only in scale-out mode

        return KafkaSink(settings)
    event_log = EventLog(settings.log_dir, segment_bytes=settings.log_segment_bytes, fsync=settings.log_fsync)
    return EmbeddedSink(event_log, engine.applier, Checkpoint(engine.redis), timeout_s=settings.apply_timeout_s)


def _outbound(settings: Settings, sink: EventSink) -> Publisher | None:
    """Kafka mode: trigger deliveries go to the outbound topic too, through the events' producer."""
    if settings.mode != "kafka" or not settings.kafka_outbound_topic:
        return None
    from streaming.outbound import TopicPublisher  # noqa: PLC0415 - only in scale-out mode
    from streaming.producer import KafkaSink  # noqa: PLC0415

    assert isinstance(sink, KafkaSink), "the Kafka mode's sink"
    return TopicPublisher(sink, settings)


async def _start_embedded(settings: Settings, engine: Engine) -> list[asyncio.Task[None]]:
    """Before serving: apply what the log holds past the checkpoint (a crash, a full backlog);
    then keep the log within its retention. Returns the background tasks to stop at shutdown."""
    background: list[asyncio.Task[Any]] = [retention.start(engine.redis, settings)]
    catching_up = await catchup.at_start(engine.applier, engine.redis, settings.log_dir,
                                         dedup_window_s=settings.dedup_window_s)
    if catching_up is not None:  # Redis did not answer: it goes on in the background
        background.append(catching_up)
    return background


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if not settings.redis_url:
        raise RuntimeError("VITRINE_REDIS_URL is not set (`vitrine serve` starts a Redis and sets it)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings, settings.redis_url or "", observe_stored_list=app.state.metrics.observe_stored_list)
        await engine.start()
        background = await _start_embedded(settings, engine) if settings.mode == "embedded" else []
        sink = _make_sink(settings, engine)
        if hasattr(sink, "start"):
            await sink.start()
        app.state.engine = engine
        app.state.sink = sink
        app.state.triggers = engine.trigger_runner(publisher=_outbound(settings, sink))
        app.state.triggers.start()
        try:
            yield
        finally:
            await app.state.triggers.stop()
            await sink.close()
            for task in background:
                await tasks.stop(task)
            await engine.stop()

    app = FastAPI(title="Vitrine", version=__version__, lifespan=lifespan, openapi_tags=TAGS,
                  description="Real-time recommendations and personalisation for e-commerce. Every error "
                              "answers `{\"error\": ..., \"errors\": [{\"field\", \"message\"}]}`.")
    install_openapi(app)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.metrics.watch(lambda: getattr(app.state, "engine", None),
                            lambda: getattr(getattr(app.state, "sink", None), "writer", None))
    app.state.rate_limits = RateLimits(settings, observe=app.state.metrics.observe_rate_limited)

    # Straight into the app's route list, not through include_router: since FastAPI 0.165 an included
    # router is a branch resolved on every request, a noticeable share of a no-op request's CPU
    # (more on /v1/recommendations). These routers have no prefix, tags or lifespan to merge, and
    # their routes carry their own dependencies (the admin key checks).
    # Matching is linear in the number of routes, so the site's busiest routes go first, ahead of
    # FastAPI's own documentation routes.
    app.router.routes[:0] = [route for module in (recommendations, page, events, blocks, health)
                             for route in module.router.routes]
    for module in (rerank, items, admin, merch, people, preferences, rules_file, segments, triggers):
        app.router.routes.extend(module.router.routes)
    web.install(app, settings)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status_code, exc.message, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": field_path(err["loc"][1:]) or "request", "message": err["msg"]}  # [0]: query, body...
                  for err in exc.errors()]
        error = invalid_request(errors)
        return error_response(error.status_code, error.message, error.errors)

    @app.exception_handler(RedisError)
    @app.exception_handler(RedisClusterException)
    async def _redis_error(request: Request, exc: Exception) -> Response:
        """Routes that need Redis (admin, catalogue) when it is down or hung, or a cluster with no
        node answering: the request can be retried, nothing is wrong with it. Site routes degrade
        instead and never get here."""
        if isinstance(exc, ClusterCrossSlotError):  # engine.store.cluster keeps every command in one slot
            log.error("%s %s: a Redis command spanned hash slots", request.method, request.url.path, exc_info=exc)
            return error_response(500, "Internal error: a Redis command spanned hash slots",
                                   [{"field": "redis", "message": "cross-slot command"}])
        log.warning("%s %s: redis unavailable (%s: %s)", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(503, f"Redis is unavailable, retry later ({type(exc).__name__})",
                               [{"field": "redis", "message": "unavailable"}], headers={"Retry-After": "1"})

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        """The client went away before its body was in (or its body timed out, api.server): nothing
        to answer, nothing wrong here. 499, nginx's "client closed request", is for the metrics."""
        log.debug("%s %s: client disconnected before the body was received", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and (page := web.not_found(request)) is not None:
            return page
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    app.add_middleware(LatencyMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=True,
                           allow_methods=["GET", "POST"], allow_headers=["content-type", "x-api-key"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def allowed_methods(request: Request) -> str:
    """Every method served at the request's path. Starlette's 405 names only those of the first
    route with that path (``PUT /v1/items``, not ``DELETE``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is Match.PARTIAL:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers: settings come from the environment."""
    settings = Settings()
    logs.configure(settings.log_format)  # a spawned worker does not inherit the command's logging
    return create_app(settings)
