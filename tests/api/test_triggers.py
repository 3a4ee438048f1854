"""Trigger admin routes through the real app: the report, the pull API, and bad input."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.cli.data import _replay
from engine.store import keys
from engine.triggers import keys as trigger_keys
from tests.conftest import ADMIN
from tests.redis_clients import is_cluster_url, sync_client

RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload:
      title: "Your cart"
      recommendations: {placement: home, n: 3}
"""


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "rules.yaml").write_text(RULES)
    # The test runs the triggers' work itself: the background poll waits an hour.
    return {"rules_file": tmp_path / "rules.yaml", "trigger_poll_s": 3600.0}


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def test_a_delivery_is_pulled_and_reported_with_its_conversion(client: TestClient) -> None:
    armed = time.time() - 3700  # due 100 s ago
    r = client.post("/v1/events", json={"events": [
        {"event_id": "c1", "type": "consent", "visitor_id": "v1", "timestamp": at(armed),
         "properties": {"purpose": "email", "granted": True}},
        {"event_id": "a1", "type": "add_to_cart", "visitor_id": "v1", "item_id": "85123A", "timestamp": at(armed)}]})
    assert r.status_code == 200, r.text
    assert client.portal.call(client.app.state.triggers.tick) == (1, 0)

    r = client.get("/v1/admin/deliveries", headers=ADMIN, params={"trigger": "cart-reminder"})
    assert r.status_code == 200, r.text
    [doc] = r.json()["deliveries"]
    assert doc["visitor_id"] == "v1" and doc["payload"]["title"] == "Your cart"
    assert len(doc["payload"]["items"]) == 3
    nothing_more = client.get("/v1/admin/deliveries", headers=ADMIN, params={"since": r.json()["next"]})
    assert nothing_more.json()["deliveries"] == []
    assert client.get("/v1/admin/deliveries", headers=ADMIN, params={"trigger": "other"}).json()["deliveries"] == []

    client.post("/v1/events", json={"event_id": "p1", "type": "purchase", "visitor_id": "v1", "item_id": "85123A",
                                    "price": 12.5, "quantity": 2})
    r = client.get("/v1/admin/triggers/cart-reminder", headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["arms"]["sent"] == {"people": 1, "deliveries": 1, "conversions": 1, "conversion_rate": 1.0,
                                      "revenue": 25.0, "revenue_per_person": 25.0}
    assert report["arms"]["control"]["people"] == 0 and report["lift"]["conversion_rate"] is None
    listed = client.get("/v1/admin/triggers", headers=ADMIN).json()["triggers"]
    assert [t["trigger"] for t in listed] == ["cart-reminder"]


def test_a_trigger_gone_from_the_rules_keeps_its_report(client: TestClient, tmp_path: Path) -> None:
    armed = time.time() - 3700
    assert client.post("/v1/events", json={"events": [
        {"event_id": "a1", "type": "add_to_cart", "visitor_id": "v1", "item_id": "85123A",
         "timestamp": at(armed)}]}).status_code == 200
    assert client.portal.call(client.app.state.triggers.tick) == (1, 0)  # not sent: no consent, but counted
    (tmp_path / "rules.yaml").write_text("triggers: {}\n")
    assert client.post("/v1/admin/rules/reload", headers=ADMIN).status_code == 200
    [listed] = client.get("/v1/admin/triggers", headers=ADMIN).json()["triggers"]
    assert (listed["trigger"], listed["defined"], listed["suppressed"]) == ("cart-reminder", False, {"no_consent": 1})


def test_a_rebuild_from_the_log_counts_no_conversion_again(client: TestClient, redis_url: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``vitrine replay --reset`` rebuilds the profiles from the log; what the triggers derived when
    the events were first applied (conversions, revenue, occurrences) is kept, not counted again."""
    armed = time.time() - 3700
    assert client.post("/v1/events", json={"events": [
        {"event_id": "c1", "type": "consent", "visitor_id": "v1", "timestamp": at(armed),
         "properties": {"purpose": "email", "granted": True}},
        {"event_id": "a1", "type": "add_to_cart", "visitor_id": "v1", "item_id": "85123A", "timestamp": at(armed)},
        {"event_id": "a2", "type": "add_to_cart", "visitor_id": "v2", "item_id": "85123A"}]}).status_code == 200
    assert client.portal.call(client.app.state.triggers.tick) == (1, 0)
    client.post("/v1/events", json={"event_id": "p1", "type": "purchase", "visitor_id": "v1", "item_id": "85123A",
                                    "price": 12.5, "quantity": 2})
    report = client.get("/v1/admin/triggers/cart-reminder", headers=ADMIN).json()
    redis = sync_client(redis_url)
    profile = redis.get(keys.visitor("v1"))
    queued = redis.zrange(trigger_keys.names(is_cluster_url(redis_url)).occurrences, 0, -1)
    assert queued  # v2's reminder, due in an hour
    assert asyncio.run(_replay(client.app.state.settings, redis_url, reset=True)) == 0
    assert "4 applied, 0 duplicates" in capsys.readouterr().out
    assert redis.get(keys.visitor("v1")) == profile
    assert client.get("/v1/admin/triggers/cart-reminder", headers=ADMIN).json() == report
    assert report["arms"]["sent"]["revenue"] == 25.0
    assert redis.zrange(trigger_keys.names(is_cluster_url(redis_url)).occurrences, 0, -1) == queued


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/v1/admin/deliveries", {"limit": "0"}, "limit"),
    ("/v1/admin/deliveries", {"limit": "many"}, "limit"),
    ("/v1/admin/deliveries", {"since": "yesterday"}, "since"),
    ("/v1/admin/deliveries", {"trigger": "Not A Name"}, "trigger"),
    ("/v1/admin/triggers/Bad!Id", {}, "trigger_id"),
])
def test_bad_parameters_get_a_4xx_naming_the_field(client: TestClient, path: str, params: dict[str, str],
                                                  field: str) -> None:
    r = client.get(path, headers=ADMIN, params=params)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_unknown_trigger_and_missing_key(client: TestClient) -> None:
    r = client.get("/v1/admin/triggers/nope", headers=ADMIN)
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "trigger_id"
    assert client.get("/v1/admin/deliveries").status_code == 401
