"""No background loop can die (engine.tasks): a failing task is logged once per failure streak with
its cause, counted in /metrics per task, and retried with backoff until it succeeds again. Real
failures where possible: a redis-server stopped with SIGSTOP, a `vitrine train` that fails."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.metrics import Metrics
from engine import tasks
from engine.store.server import start_redis
from tests.conftest import ADMIN, make_settings


def failures_in_metrics(exposition: str, task: str) -> float:
    match = re.search(rf'^vitrine_task_failures_total{{task="{re.escape(task)}"}} (\S+)$', exposition, re.M)
    assert match, f"no failure counter for {task!r}"
    return float(match.group(1))


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() -> None:
    streak = tasks.FailureStreak("test-backoff", first_backoff_s=0.5, max_backoff_s=3)
    assert [streak.failed(OSError()) for _ in range(5)] == [0.5, 1, 2, 3, 3]
    streak.succeeded()
    assert streak.failed(OSError()) == 0.5
    assert tasks.failures("test-backoff") == 6
    assert {streak.failed(OSError()) for _ in range(5000)} == {1, 2, 3}  # a day-long outage: still 3


def test_a_failing_step_is_logged_once_per_streak_counted_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """Three failures, a success, a failure of another kind, a success: two streaks, two first
    failures logged (the unexpected one with its traceback), two recoveries, four failures counted."""
    outcomes: list[BaseException | None] = [None, ConnectionError("refused"), ConnectionError("refused"),
                                            ConnectionError("refused"), None, KeyError("boom"), None]
    metrics = Metrics()

    async def main() -> None:
        done = asyncio.Event()

        async def step() -> None:
            if not outcomes:
                done.set()
                await asyncio.sleep(10)
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome

        task = tasks.start("test-step", step, first_backoff_s=0.001, max_backoff_s=0.002,
                           expected=lambda exc: isinstance(exc, ConnectionError))
        await asyncio.wait_for(done.wait(), 10)
        assert not task.done()  # still running: nothing but a cancellation ends it
        assert await tasks.stop(task)

    with caplog.at_level(logging.INFO, logger="engine.tasks"):
        asyncio.run(main())
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("WARNING", "test-step failed (ConnectionError: refused); retrying with backoff until it succeeds", False),
        ("WARNING", "test-step recovered after 3 failed attempts", False),
        ("ERROR", "test-step failed (KeyError: 'boom'); retrying with backoff until it succeeds", True),
        ("WARNING", "test-step recovered after 1 failed attempts", False),
    ]
    assert tasks.failures("test-step") == 4
    assert failures_in_metrics(asyncio.run(metrics.render()).body.decode(), "test-step") == 4


def test_the_pollers_survive_a_redis_that_stops_answering(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Redis is stopped (SIGSTOP) for a while: the catalogue poll fails on every try, is logged
    once and counted; once Redis answers again the poll goes on and picks up a new catalogue."""
    from api.app import create_app
    from engine.catalog import Item, upsert_items

    server = start_redis(tmp_path / "redis", persist=False)
    settings = make_settings(tmp_path, server.url, model_poll_s=0.1, redis_socket_timeout_s=0.2)
    before = tasks.failures("catalogue-poll")
    try:
        with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO, logger="engine.tasks"):
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 20
                while tasks.failures("catalogue-poll") < before + 3:
                    assert time.monotonic() < deadline, "the catalogue poll did not try again"
                    time.sleep(0.05)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)

            async def add_item() -> None:
                async with redis.asyncio.Redis.from_url(server.url) as r:
                    await upsert_items(r, [Item(item_id="NEW-1", title="New", category="kitchen.mugs", price=3.0)])

            asyncio.run(add_item())
            deadline = time.monotonic() + 20
            while client.get("/ready").json()["checks"]["catalogue_items"] != "1":
                assert time.monotonic() < deadline, "the catalogue poll died with the outage"
                time.sleep(0.05)
            exposition = client.get("/metrics", headers=ADMIN).text
    finally:
        server.stop()
    failed = [r for r in caplog.records if r.getMessage().startswith("catalogue-poll failed")]
    assert len(failed) == 1 and "TimeoutError" in failed[0].getMessage()
    assert sum(r.getMessage().startswith("catalogue-poll recovered") for r in caplog.records) == 1
    assert failures_in_metrics(exposition, "catalogue-poll") >= before + 3
    assert failures_in_metrics(exposition, "rules-poll") >= 0  # every poller has its counter from the start


def test_a_failing_retrain_is_retried_logged_once_and_counted(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """`vitrine train` with no events fails; the retraining thread keeps trying (sooner than the
    interval at first) and says so once."""
    from api.cli.retrain import TASK_NAME, Retrainer

    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("VITRINE_REDIS_URL", None)
    before = tasks.failures(TASK_NAME)
    retrainer = Retrainer(0.2, env)
    with caplog.at_level(logging.INFO, logger="engine.tasks"):
        retrainer.start()
        try:
            deadline = time.monotonic() + 120
            while tasks.failures(TASK_NAME) < before + 2:
                assert time.monotonic() < deadline, "retraining stopped trying"
                time.sleep(0.1)
        finally:
            retrainer.stop()
    assert retrainer.runs >= 2
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrain failed")]
    assert len(failed) == 1 and "RetrainFailed: exit 1" in failed[0]
