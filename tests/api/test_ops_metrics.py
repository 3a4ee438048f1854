"""/metrics as an operator reads it: process and runtime families, model and rules versions,
degraded answers by cause, Redis reply times, the apply queue, trigger outcomes; and the Grafana
dashboard and alert rules in api/ops/ reference only metrics a live scrape has."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from engine.observe import log_lag_bytes
from tests.conftest import ADMIN

OPS = Path(__file__).resolve().parents[2] / "api" / "ops"
PREFIXES = ("vitrine_", "process_", "python_")
# Exported by `vitrine worker` (streaming.metrics), checked against a worker's scrape in
# tests/streaming/test_worker_metrics.py.
WORKER_ONLY = {"vitrine_consumer_lag_messages", "vitrine_consumer_highwater_offset",
               "vitrine_consumer_committed_offset", "vitrine_applier_process_cpu_seconds_total",
               "vitrine_applier_process_resident_memory_bytes"}

RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload:
      title: "Your cart"
"""


def referenced_metrics() -> set[str]:
    """Every metric name in the dashboard's queries and the alert rules' expressions."""
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    alerts = yaml.safe_load((OPS / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    names = set()
    for expr in exprs:
        # A selector is a name followed by {labels} or [range]; every one must be ours.
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr):
            assert name.startswith(PREFIXES), f"{name!r} in {expr!r} is not a metric this project exports"
        names |= set(re.findall(r"\b((?:%s)[a-zA-Z0-9_:]*)" % "|".join(PREFIXES), expr))
    return names


def scraped(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a live /metrics."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    [found] = [v for got, v in samples[name] if all(got.get(k) == w for k, w in labels.items())]
    return found


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "rules.yaml").write_text(RULES)
    return {"rules_file": tmp_path / "rules.yaml", "trigger_poll_s": 3600.0}


@pytest.fixture
def busy(client: TestClient) -> Iterator[TestClient]:
    """An app that has applied events, answered recommendations and decided a trigger."""
    armed = time.time() - 3700  # the cart reminder is due
    r = client.post("/v1/events", json={"events": [
        {"event_id": "c1", "type": "consent", "visitor_id": "v1", "timestamp": at(armed),
         "properties": {"purpose": "email", "granted": True}},
        {"event_id": "a1", "type": "add_to_cart", "visitor_id": "v1", "item_id": "85123A", "timestamp": at(armed)}]})
    assert r.status_code == 200, r.text
    assert client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v1"}).status_code == 200
    assert client.portal.call(client.app.state.triggers.tick)[0] == 1
    yield client


def test_every_metric_the_dashboard_and_alerts_read_is_in_a_live_scrape(busy: TestClient) -> None:
    wanted = referenced_metrics()
    assert WORKER_ONLY <= wanted  # the split below is not vacuous
    missing = wanted - WORKER_ONLY - set(scraped(busy))
    assert not missing, f"referenced by api/ops/ but not exported: {sorted(missing)}"


def test_process_and_runtime_families_are_served(client: TestClient) -> None:
    samples = scraped(client)
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "python_gc_collections_total", generation="0") >= 0
    assert samples["python_info"]


def test_the_served_model_and_rules_versions_and_a_rejected_rules_file(client: TestClient,
                                                                        settings_overrides: dict) -> None:
    samples = scraped(client)
    model = client.app.state.engine.models.current
    assert value(samples, "vitrine_model_info", version=model.version) == 1
    assert value(samples, "vitrine_model_loaded") == 1
    assert 0 < value(samples, "vitrine_model_age_seconds") < 30 * 86400
    rules = client.get("/v1/admin/rules", headers=ADMIN).json()
    assert value(samples, "vitrine_rules_info", version=rules["version"]) == 1
    assert value(samples, "vitrine_rules_last_load_failed") == 0
    assert value(samples, "vitrine_rules_load_errors_total") == 0

    settings_overrides["rules_file"].write_text("placements: [not, a, mapping]\n")
    client.app.state.engine.rules.reload(force=True)
    samples = scraped(client)
    assert value(samples, "vitrine_rules_last_load_failed") == 1
    assert value(samples, "vitrine_rules_load_errors_total") == 1
    assert value(samples, "vitrine_rules_info", version=rules["version"]) == 1  # still served


def test_degraded_answers_are_counted_by_cause(client: TestClient) -> None:
    recommender = client.app.state.engine.recommender
    for _ in range(client.app.state.settings.redis_breaker_failures):  # as after that many failed reads
        recommender.breaker.failed(client.portal.call(_loop_time))
    r = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "d1"})
    assert r.json().get("degraded") is True
    samples = scraped(client)
    assert value(samples, "vitrine_degraded_answers_total", cause="breaker_open") == 1
    assert value(samples, "vitrine_degraded_answers_total", cause="timeout") == 0
    assert value(samples, "vitrine_redis_breaker_open") == 1
    assert value(samples, "vitrine_redis_breaker_trips_total") == 1


async def _loop_time() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.parametrize("settings_overrides", [{"redis_timeout_s": 1e-7}])
def test_a_read_past_its_budget_counts_as_a_timeout(client: TestClient) -> None:
    r = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "t1"})
    assert r.json().get("degraded") is True
    assert value(scraped(client), "vitrine_degraded_answers_total", cause="timeout") == 1


def test_redis_reply_times_and_the_apply_path(busy: TestClient) -> None:
    samples = scraped(busy)
    for call in ("read", "apply_read", "apply_write"):
        assert value(samples, "vitrine_redis_command_duration_seconds_count", call=call) >= 1
        assert value(samples, "vitrine_redis_command_duration_seconds_bucket", call=call, le="+Inf") == \
            value(samples, "vitrine_redis_command_duration_seconds_count", call=call)
    assert value(samples, "vitrine_events_applied_total") == 2
    assert value(samples, "vitrine_apply_queue_events") == 0
    deadline = time.monotonic() + 10  # the checkpoint moves just after the apply answers the request
    while value(scraped(busy), "vitrine_applied_log_lag_bytes") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert value(scraped(busy), "vitrine_applied_log_lag_bytes") == 0


def test_trigger_outcomes_per_trigger(busy: TestClient) -> None:
    samples = scraped(busy)
    assert value(samples, "vitrine_trigger_decisions_total", trigger="cart-reminder", outcome="sent",
                 reason="") == 1
    assert value(samples, "vitrine_trigger_decisions_total", trigger="cart-reminder", outcome="suppressed",
                 reason="no_consent") == 0
    assert value(samples, "vitrine_trigger_webhook_total", trigger="cart-reminder", result="dead_letter") == 0


def test_log_lag_is_what_the_segments_hold_past_the_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "events-00000000000000000001-1.jsonl").write_bytes(b"x" * 100)
    (tmp_path / "events-00000000000000000002-1.jsonl").write_bytes(b"y" * 40)
    assert log_lag_bytes(tmp_path, {"events-00000000000000000001-1.jsonl": 100}) == 40
    assert log_lag_bytes(tmp_path, {"events-00000000000000000001-1.jsonl": 60}) == 80
    assert log_lag_bytes(tmp_path / "none", {}) == 0
