"""Shared fixtures: a real redis-server and a model trained on the real demo data.

Redis runs on a free 127.0.0.1 port for the whole session and is flushed before each test that
uses it; it is stopped when the session ends. With ``VITRINE_TEST_REDIS=cluster`` the session's
Redis is a real three-primary, three-replica Redis Cluster instead: ``redis_url`` names one of its
nodes and ``make_settings`` sets ``redis_cluster``, so the same test modules run on a cluster;
tests about one redis-server itself are marked ``single_redis`` and skipped there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.store.server import RedisServer, free_port, start_redis
from engine.settings import Settings
from engine.threads import limit_blas_threads
from tests import redis_clients
from tests.redis_clients import CLUSTER_MODE
from tests.redis_cluster import Cluster, start_cluster

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"X-API-Key": ADMIN_KEY}


def pytest_configure(config: pytest.Config) -> None:
    """The test session is a process entry, as `vitrine` is: before a test module loads numpy.
    Training in tests does not tune unless a test asks for trials (tuning has tests of its own);
    the servers and commands the tests start inherit that."""
    limit_blas_threads()
    os.environ.setdefault("VITRINE_TUNE_TRIALS", "0")
    config.addinivalue_line("markers", "single_redis(reason): the test is about one redis-server (its "
                            "restart, files, databases, TLS, Sentinel); skipped with VITRINE_TEST_REDIS=cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the session cluster, run only the tests that use the session's Redis (the others, and the
    tests on a ``cluster`` of their own, which compare it with one Redis or kill its nodes, run the
    same in the single-Redis passes), and skip those marked ``single_redis``, saying why."""
    if not CLUSTER_MODE:
        return
    kept, other = [], []
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        (kept if "session_redis_url" in uses and "cluster" not in uses else other).append(item)
        marker = item.get_closest_marker("single_redis")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "about one redis-server")
            item.add_marker(pytest.mark.skip(reason=f"single Redis only: {reason}"))
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = kept


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's Redis Cluster when ``VITRINE_TEST_REDIS=cluster`` (never killed: the failover
    tests start their own with ``cluster``)."""
    started = start_cluster(tmp_path_factory.mktemp("session-cluster"))
    redis_clients.cluster_ports.update(s.port for s in started.servers)
    try:
        yield started
    finally:
        redis_clients.cluster_ports.difference_update(s.port for s in started.servers)
        started.stop()


@pytest.fixture(scope="session")
def session_redis_url(request: pytest.FixtureRequest) -> str:
    """The session's Redis, as it is: one redis-server, or with ``VITRINE_TEST_REDIS=cluster`` a node
    of the session cluster."""
    return request.getfixturevalue("session_cluster" if CLUSTER_MODE else "redis_server").url


@pytest.fixture
def redis_url(session_redis_url: str) -> str:
    """The session's Redis with every key flushed (on a cluster: on every primary)."""
    with redis_clients.sync_client(session_redis_url) as client:
        client.flushall()
    return session_redis_url


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo shop's items and the first ~120k purchase lines (Dec 2009 - Mar 2010)."""
    from models.datasets import write_online_retail

    out = tmp_path_factory.mktemp("demo")
    items, events = write_online_retail(out)
    subset = out / "events_subset.csv"
    with events.open() as src, subset.open("w") as dst:
        for number, line in enumerate(src):
            if number > 120_000:
                break
            dst.write(line)
    return items, subset


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory, demo_files: tuple[Path, Path]) -> Path:
    """A models dir holding one promoted artifact trained on the demo subset."""
    from engine.events.history import interactions
    from engine.ingest.importer import ImportReport, read_events
    from models.als import ALSParams
    from models.train import TrainConfig, train_from_rows

    _, events = demo_files
    rows = interactions(e.model_dump() for e in read_events(events, ImportReport(), accepted_at=time.time()))
    models_dir = tmp_path_factory.mktemp("models")
    settings = Settings()
    train_from_rows(rows, TrainConfig(weights=settings.event_weights, als=ALSParams(factors=32, iterations=10)),
                    models_dir)
    return models_dir


def without_settings(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus ``VITRINE_`` settings (a newcomer's), except the test session's own
    choices: the redis-server binary (CI's pass on the bundled Redis 6.2 forces it everywhere) and
    no tuning at train time (``pytest_configure``)."""
    env = dict(os.environ if env is None else env)
    kept = ("VITRINE_REDIS_SERVER", "VITRINE_TUNE_TRIALS")
    return {k: v for k, v in env.items() if not k.startswith("VITRINE_") or k in kept}


def make_settings(data_dir: Path, redis_url: str, **overrides: object) -> Settings:
    """Rate limits are off: every test client calls from one address, faster than any visitor
    (tests/api/test_limits.py turns them on). A request's Redis budget is 1 s, not the production
    50 ms: on a loaded test machine a read can miss 50 ms, and the answer would come from the model
    alone; the tests of that fallback set their own budget."""
    values = {"data_dir": data_dir, "redis_url": redis_url, "admin_key": ADMIN_KEY, "model_poll_s": 0.2,
              "rate_limits": False, "redis_timeout_s": 1.0,
              "redis_cluster": redis_url is not None and redis_clients.is_cluster_url(redis_url)}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path, trained_models: Path) -> Path:
    """A fresh data dir with a copy of the trained model."""
    shutil.copytree(trained_models, tmp_path / "models")
    return tmp_path


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Settings the ``client`` app gets on top of ``make_settings``'; a test module overrides this fixture."""
    return {}


@pytest.fixture
def client(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path],
           settings_overrides: dict[str, object]) -> Iterator[TestClient]:
    """The app in process (lifespan included) with the demo catalogue loaded."""
    from api.app import create_app
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    items, _ = demo_files

    async def load() -> None:
        client = redis_clients.async_client(redis_url)
        await upsert_items(client, read_items(items, ImportReport()))
        await client.aclose()

    asyncio.run(load())
    with TestClient(create_app(make_settings(data_dir, redis_url, **settings_overrides))) as test_client:
        yield test_client


class LiveServer:
    """uvicorn on a free 127.0.0.1 port in a thread, for tests that need real sockets."""

    def __init__(self, app: object) -> None:
        import uvicorn

        from api.server import uvicorn_options

        self.port = free_port()
        options = uvicorn_options(app.state.settings)  # type: ignore[attr-defined]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    loop="asyncio", lifespan="on", **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real 3-primary, 3-replica Redis Cluster on 127.0.0.1 (tests.redis_cluster), one per test module."""
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()
