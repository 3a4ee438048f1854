"""The applier process of a real ``vitrine worker`` against the real test broker: killed, it is
replaced and every event still counts once; it leaves with its consumer, whether that one is
killed or stopped with a signal to its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.settings import Settings, as_environment
from streaming.devstack import ROOT, VitrineProcess
from tests.processes import command_line
from tests.redis_clients import sync_client
from tests.streaming.conftest import wait_until
from tests.streaming.test_kafka_mode import cart_adds, carted, visitor


def applier_of(pid: int) -> psutil.Process | None:
    for child in psutil.Process(pid).children():
        if "streaming.applier.child" in command_line(child):
            return child
    return None


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_applier_is_replaced_and_every_event_counts_once(
        kafka_settings: Settings, start_worker: Callable[[], VitrineProcess]) -> None:
    visitors, per_visitor = 40, 30
    events = cart_adds(visitors, per_visitor)
    r = sync_client(kafka_settings.redis_url)
    worker = start_worker()
    wait_until(lambda: applier_of(worker.process.pid), what="the worker's applier process")
    first = applier_of(worker.process.pid)
    assert first is not None
    with TestClient(create_app(kafka_settings)) as api:
        half = len(events) // 2
        for start in range(0, half, 20):
            assert api.post("/v1/events", json={"events": events[start:start + 20]}).status_code == 200
        wait_until(lambda: carted(r, visitors) >= 100, what="the applier to apply some events")
        first.kill()
        for start in range(half, len(events), 20):
            assert api.post("/v1/events", json={"events": events[start:start + 20]}).status_code == 200
    try:
        wait_until(lambda: carted(r, visitors) == len(events), what="the next applier to apply every event")
    except AssertionError as exc:  # what happened, for a run that cannot be repeated
        raise AssertionError(f"{exc}: {carted(r, visitors)} of {len(events)} applied; the worker said:\n"
                             f"{worker.output()[-6000:]}") from None
    second = applier_of(worker.process.pid)
    assert second is not None and second.pid != first.pid
    assert worker.process.poll() is None  # the consumer stayed up
    for v in range(visitors):
        assert visitor(r, f"v-{v}")["ct"] == {"85123A": per_visitor}
    said = [line for line in worker.output().splitlines() if "stream-applier" in line]
    assert said and "failed" in said[0] and "recovered" in said[-1]


def test_the_applier_leaves_when_its_worker_is_killed(
        kafka_settings: Settings, start_worker: Callable[[], VitrineProcess]) -> None:
    worker = start_worker()
    wait_until(lambda: applier_of(worker.process.pid), what="the worker's applier process")
    applier = applier_of(worker.process.pid)
    assert applier is not None
    worker.kill()
    wait_until(lambda: gone(applier), timeout_s=30, what="the applier to leave after its worker")
    assert "applier process stopping" in worker.output()


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_whole_group_stops_the_worker_and_its_applier(kafka_settings: Settings, tmp_path: Path,
                                                                      sent: signal.Signals) -> None:
    """A terminal's Ctrl-C, or a service manager's SIGTERM, reaches the whole process group: the
    applier ignores it and leaves once its worker closes the socket (it is not killed)."""
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log_file:
        worker = subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "--loglevel", "info"],
                                  env=as_environment(kafka_settings), cwd=ROOT, stdin=subprocess.DEVNULL,
                                  stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: applier_of(worker.pid) and "worker ready" in log_path.read_text(),
                   what="the worker and its applier process")
        applier = applier_of(worker.pid)
        assert applier is not None
        os.killpg(worker.pid, sent)
        worker.wait(timeout=60)
        wait_until(lambda: gone(applier), timeout_s=30, what="the applier to leave with its worker")
        said = log_path.read_text()
        assert "applier process stopping" in said and "did not stop" not in said
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
