"""A worker's own /metrics (``VITRINE_WORKER_METRICS_PORT``) against the real test broker: consumer
lag per partition, events applied, Redis reply times, process families; and the dashboard's
worker-only metrics exist there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from engine.settings import Settings
from engine.store.server import free_port
from streaming.devstack import VitrineProcess
from streaming.metrics import partition_lag
from tests.api.test_ops_metrics import WORKER_ONLY
from tests.streaming.conftest import wait_until

Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
def worker_settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.model_copy(update={"worker_metrics_port": free_port()})


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[VitrineProcess]:
    process = VitrineProcess(["worker", "--loglevel", "info"], worker_settings, tmp_path / "worker.log")
    yield process
    process.stop()


def scrape(settings: Settings) -> Samples | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5)
    except httpx.TransportError:
        return None  # not listening yet
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(samples: Samples, name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def test_a_worker_reports_its_lag_per_partition_and_what_it_applied(worker_settings: Settings, worker) -> None:
    events = [{"event_id": f"e-{i}", "type": "add_to_cart", "visitor_id": f"v-{i % 40}", "item_id": "85123A"}
              for i in range(200)]
    with TestClient(create_app(worker_settings)) as api:
        assert api.post("/v1/events", json={"events": events}).status_code == 200

    def caught_up() -> Samples | None:
        samples = scrape(worker_settings)
        if samples is None or total(samples, "vitrine_consumer_committed_offset") != len(events):
            return None
        return samples

    wait_until(caught_up, what="the worker to apply and commit every event")
    samples = caught_up()
    assert samples is not None
    assert WORKER_ONLY <= set(samples)
    lags = samples["vitrine_consumer_lag_messages"]
    assert lags and all(v == 0 for _, v in lags)
    assert {labels["topic"] for labels, _ in lags} == {worker_settings.kafka_events_topic}
    highwater = {labels["partition"]: v for labels, v in samples["vitrine_consumer_highwater_offset"]}
    assert sum(highwater.values()) == len(events)
    assert total(samples, "vitrine_events_applied_total") == len(events)
    write = [v for labels, v in samples["vitrine_redis_command_duration_seconds_count"]
             if labels["call"] == "apply_write"]
    assert write and write[0] >= 1
    assert total(samples, "process_cpu_seconds_total") > 0


def test_lag_is_known_once_both_offsets_are() -> None:
    assert partition_lag(120, 100) == 20
    assert partition_lag(100, 100) == 0
    assert partition_lag(None, 100) is None
    assert partition_lag(100, None) is None
