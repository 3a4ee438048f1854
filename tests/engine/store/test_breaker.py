"""The request path's circuit breaker: a Redis that stops answering costs a few requests their read
budget, not every request; one slow read does not open it; once Redis answers again, it closes."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store.breaker import Breaker
from engine.store.server import RedisServer, start_redis
from tests.conftest import make_settings

RULES = """blocks:
  - id: greeting
    slot: home_top
    title: "Hello {first_name|there}"
"""
OPEN_S = 2.0


def test_failures_in_a_row_open_it_and_a_success_between_them_does_not() -> None:
    breaker = Breaker(open_s=1.0, probe_s=0.05, failures=3)
    breaker.failed(0.0)
    breaker.failed(0.1)
    breaker.succeeded()  # one slow read, then another: each degrades its own answer only
    breaker.failed(0.2)
    breaker.failed(0.3)
    assert breaker.closed and breaker.allow(0.3) and breaker.trips == 0
    breaker.failed(0.4)
    assert not breaker.closed and breaker.trips == 1 and not breaker.allow(0.5)
    assert breaker.allow(1.4)  # the probe
    breaker.failed(1.45)  # a failed probe opens it again at once
    assert not breaker.allow(1.5) and breaker.trips == 1


def test_open_skips_then_one_probe_at_a_time_then_closed() -> None:
    breaker = Breaker(open_s=1.0, probe_s=0.05, failures=1)
    assert breaker.allow(0.0) and breaker.closed
    breaker.failed(0.0)
    assert not breaker.closed and breaker.trips == 1
    assert not breaker.allow(0.5) and not breaker.allow(0.99)
    assert breaker.skipped == 2
    assert breaker.allow(1.0)  # the probe
    assert not breaker.allow(1.01)  # the others skip while it runs
    breaker.failed(1.05)  # the probe failed: open again, not a new trip
    assert breaker.trips == 1 and not breaker.allow(2.0)
    assert breaker.allow(2.05)  # the next probe
    breaker.succeeded()
    assert breaker.closed and breaker.allow(2.06) and breaker.skipped == 4


def test_a_probe_whose_caller_went_away_holds_the_breaker_one_budget_only() -> None:
    breaker = Breaker(open_s=1.0, probe_s=0.05, failures=1)
    breaker.failed(0.0)
    assert breaker.allow(1.0)  # a probe, then its request is cancelled: neither failed nor succeeded
    assert not breaker.allow(1.04)
    assert breaker.allow(1.05)  # its budget is over: another request probes


@pytest.fixture
def paused_redis(tmp_path: Path, trained_models: Path) -> Iterator[tuple[TestClient, RedisServer]]:
    """The app (recommendations and a content block) on a Redis of its own, which the test may
    stop with SIGSTOP; it is resumed and stopped afterwards whatever happens. The breaker opens at
    the first failed read, so that one request (not three, each waiting out the tests' 1 s budget)
    shows it."""
    shutil.copytree(trained_models, tmp_path / "models")
    (tmp_path / "rules.yaml").write_text(RULES)
    server = start_redis(tmp_path / "redis", persist=False)
    try:
        settings = make_settings(tmp_path, server.url, rules_file=tmp_path / "rules.yaml", redis_breaker_open_s=OPEN_S,
                                 redis_breaker_failures=1)
        with TestClient(create_app(settings)) as app:
            yield app, server
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_a_paused_redis_opens_the_breaker_for_recommendations_and_blocks(
        paused_redis: tuple[TestClient, RedisServer]) -> None:
    app, server = paused_redis
    engine = app.app.state.engine  # type: ignore[attr-defined]
    breaker = engine.recommender.breaker

    def home() -> dict:
        r = app.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v1"})
        assert r.status_code == 200, r.text
        return r.json()

    def block() -> dict:
        r = app.get("/v1/blocks/home_top", params={"visitor_id": "v1"})
        assert r.status_code == 200, r.text
        return r.json()

    assert "degraded" not in home() and "degraded" not in block() and breaker.closed
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        assert home()["degraded"] is True  # this one waited out its read budget
        assert not breaker.closed and (breaker.trips, breaker.skipped) == (1, 0)
        sent = len(engine.reads._connection._waiting)  # reads sent and not answered
        for _ in range(5):
            assert home()["degraded"] is True
            assert block()["degraded"] is True
        # None of them read Redis: nothing more was sent, each was skipped.
        assert (breaker.trips, breaker.skipped) == (1, 10)
        assert len(engine.reads._connection._waiting) == sent
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    time.sleep(OPEN_S)  # past the open window the next request probes Redis, which answers again
    assert "degraded" not in home()
    assert breaker.closed
    assert "degraded" not in block() and breaker.skipped == 10 and breaker.trips == 1
