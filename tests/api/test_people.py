"""The customer-relationship endpoints through the HTTP API against a real Redis: the single
customer view, consent per purpose, export, erase (keys, log, replay, training), bad input."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.customers import audit
from engine.events.erased import digest
from engine.events.history import interactions_from_log
from engine.events.log import read_raw, segments
from models.customer_value import ShopModel, save
from engine.store import keys
from tests.conftest import ADMIN
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE
from tests.redis_clients import redis_environment, sync_client

DAY = 86400.0
MODEL = ShopModel(horizon_days=90, typical_gap_days=38.0, buy_w=(-0.406, -0.428, 1.256, 0.408, -0.003), buy_b=-2.545,
                  spend_w=(0.0, -0.030, 0.595, 0.759, -0.092), spend_b=2.171,
                  orders_w=(0.0, -0.071, 0.576, 0.093, -0.141), orders_b=0.395,
                  means=(0.3, 0.4, 0.8, 5.5, 4.6))


@pytest.fixture
def settings_overrides(data_dir: Path) -> dict[str, object]:
    (data_dir / "rules.yaml").write_text('blocks:\n  - id: greeting\n    slot: home_top\n    title: "Hello"\n')
    return {"rules_file": data_dir / "rules.yaml"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def post(client: TestClient, events: list[dict[str, Any]], headers: dict[str, str] | None = ADMIN) -> None:
    r = client.post("/v1/events", json={"events": events}, headers=headers)
    assert r.status_code == 200, r.text
    assert len(r.json()["accepted"]) == len(events), r.text


def shop(client: TestClient, customer: str, laptop: str, phone: str, now: float) -> None:
    """A customer with three orders over two devices, the last one 20 days ago."""
    post(client, [
        {"event_id": f"{customer}-l1", "type": "login", "visitor_id": laptop, "customer_id": customer,
         "properties": {"first_name": "Alice"}, "timestamp": iso(now - 200 * DAY)},
        {"event_id": f"{customer}-o1", "type": "purchase", "visitor_id": laptop, "timestamp": iso(now - 200 * DAY),
         "items": [{"item_id": "85123A", "quantity": 2, "price": 2.95}]},
        {"event_id": f"{customer}-o2", "type": "purchase", "visitor_id": laptop, "timestamp": iso(now - 100 * DAY),
         "items": [{"item_id": "22086", "quantity": 1, "price": 40.0}]},
        {"event_id": f"{customer}-p1", "type": "login", "visitor_id": phone, "customer_id": customer,
         "timestamp": iso(now - 21 * DAY)},
        {"event_id": f"{customer}-o3", "type": "purchase", "visitor_id": phone, "timestamp": iso(now - 20 * DAY),
         "items": [{"item_id": "21232", "quantity": 4, "price": 5.0}]},
        {"event_id": f"{customer}-b1", "type": "block_impression", "visitor_id": phone,
         "properties": {"block_id": "greeting"}},
    ])


def test_customer_view_after_a_purchase_history(client: TestClient, data_dir: Path) -> None:
    now = time.time()
    shop(client, "alice", "a-laptop", "a-phone", now)
    r = client.get("/v1/customers/alice", headers=ADMIN)
    assert r.status_code == 200, r.text
    view = r.json()
    assert set(view["identity"]["devices"]) == {"a-laptop", "a-phone"}
    assert view["rfm"]["frequency"] == 3 and view["rfm"]["monetary"] == 65.9
    assert 19.9 <= view["rfm"]["recency_days"] <= 20.1 and view["rfm"]["inter_purchase_days"] == 90.0
    assert view["rfm"]["average_basket"] == round(65.9 / 3, 2)
    assert view["consent"] == {"profiling": "not_given (profiled until withdrawn)", "email": "not_given",
                               "push": "not_given", "on_site": "not_given"}
    assert view["traits"] == {"first_name": "Alice"} and "loyal" in view["segments"]
    assert view["pressure"]["1d"]["block_impressions"] == 1
    assert view["scores"] is None  # no shop model trained yet

    save(data_dir / "models", MODEL, {})
    scores = client.get("/v1/customers/alice", headers=ADMIN).json()["scores"]
    assert 0 < scores["p_buy"] < 1 and scores["expected_revenue"] > 0 and scores["churn_risk"] in ("low", "medium", "high")
    assert {r["factor"] for r in scores["reasons"]} <= {"recency", "frequency", "basket", "tenure"}
    post(client, [{"event_id": "alice-o4", "type": "purchase", "visitor_id": "a-phone",
                   "items": [{"item_id": "21232", "quantity": 4, "price": 5.0}]}])
    after = client.get("/v1/customers/alice", headers=ADMIN).json()["scores"]
    assert after["p_buy"] > scores["p_buy"] and after["expected_revenue"] > scores["expected_revenue"]

    assert client.get("/v1/customers/nobody", headers=ADMIN).status_code == 404
    r = client.get("/v1/customers/bad%20id", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id"
    assert client.get("/v1/customers/alice").status_code == 401


def test_consent_per_purpose(client: TestClient) -> None:
    shop(client, "bob", "b-laptop", "b-phone", time.time())
    post(client, [{"event_id": "bob-e1", "type": "consent", "visitor_id": "b-laptop",
                   "properties": {"granted": True, "purpose": "email"}},
                  {"event_id": "bob-e2", "type": "consent", "visitor_id": "b-phone",
                   "properties": {"granted": False, "purpose": "push"}}], headers=None)
    view = client.get("/v1/customers/bob", headers=ADMIN).json()
    assert view["consent"]["email"] == "granted" and view["consent"]["push"] == "withdrawn"
    assert view["rfm"]["frequency"] == 3  # a choice about contact forgets nothing
    # Refusing email on the other device: the most restrictive choice wins.
    post(client, [{"event_id": "bob-e3", "type": "consent", "visitor_id": "b-phone",
                   "properties": {"granted": False, "purpose": "email"}}], headers=None)
    assert client.get("/v1/customers/bob", headers=ADMIN).json()["consent"]["email"] == "withdrawn"
    # Global Privacy Control withdraws profiling; the contact choices stay on record.
    r = client.post("/v1/events", json={"events": [{"event_id": "bob-g", "type": "page_view", "visitor_id": "b-laptop"}]},
                    headers={"Sec-GPC": "1"})
    assert r.status_code == 200
    view = client.get("/v1/customers/bob", headers=ADMIN).json()
    assert view["consent"] == {"profiling": "withdrawn", "email": "withdrawn", "push": "withdrawn",
                               "on_site": "not_given"}
    assert view["rfm"]["frequency"] == 0
    r = client.post("/v1/events", json={"events": [{"event_id": "bad", "type": "consent", "visitor_id": "b-laptop",
                                                    "properties": {"granted": True, "purpose": "sms"}}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "events[0].properties.purpose"


def person_keys(redis_url: str, names: list[str]) -> list[bytes]:
    with sync_client(redis_url) as r:
        return [k for k in r.scan_iter(count=1000) if any(n.encode() in k for n in names)]


def test_export_then_erase(client: TestClient, data_dir: Path, redis_url: str) -> None:
    now = time.time()
    shop(client, "carol", "c-laptop", "c-phone", now)
    shop(client, "dave", "d-laptop", "d-phone", now)
    with sync_client(redis_url) as r:  # what the trigger runner keeps of a message it sent carol
        r.zadd(keys.trigger_sends("carol"), {"email|cart|k1": now})
        r.hset(keys.trigger_touches("carol"), "cart", f"sent|{now}|86400")
    r = client.get("/v1/people/c-phone/export", headers={**ADMIN, "X-Requested-By": "ticket #42"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ids"] == {"visitor_ids": ["c-phone", "c-laptop"], "customer_ids": ["carol"]} \
        or sorted(doc["ids"]["visitor_ids"]) == ["c-laptop", "c-phone"]
    assert doc["customer"]["orders"] == 3 and len(doc["profiles"]) == 2
    assert {e["event_id"] for e in doc["events"]} == {f"carol-{x}" for x in ("l1", "o1", "o2", "p1", "o3", "b1")}
    assert any(e.get("properties", {}).get("first_name") == "Alice" for e in doc["events"])
    assert doc["messages"] == {"carol": [{"message": "email|cart|k1", "at": now}]}

    r = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "c-phone", "n": 2, "offset": 0})
    assert r.status_code == 200, r.text
    assert person_keys(redis_url, [keys.pages("c-phone")])  # the pages served under a recommendation id
    r = client.delete("/v1/people/carol", headers={**ADMIN, "X-Requested-By": "ticket #42"})
    assert r.status_code == 200, r.text
    assert r.json()["keys_deleted"] >= 5
    assert person_keys(redis_url, ["carol", "c-laptop", "c-phone"]) == []
    assert person_keys(redis_url, ["dave", "d-laptop"])  # others untouched
    assert client.get("/v1/customers/dave", headers=ADMIN).json()["rfm"]["frequency"] == 3
    log_dir = data_dir / "log"
    assert not [e for e in read_raw(log_dir) if e.get("customer_id") == "carol" or e["visitor_id"].startswith("c-")]
    assert not [row for row in interactions_from_log(log_dir) if row.visitor_id.startswith("c-")]
    assert client.get("/v1/people/carol/export", headers=ADMIN).status_code == 404
    records = audit.read(data_dir)
    assert [r["action"] for r in records] == ["export", "erase"] and records[1]["by"] == "ticket #42"
    assert digest("carol") in records[1]["customers"] and "carol" not in str(records)

    r = client.delete("/v1/people/bad%20id", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id"
    r = client.get("/v1/people/dave/export", headers={**ADMIN, "X-Requested-By": "x" * 200})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "X-Requested-By"


def vitrine(args: list[str], data_dir: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(VITRINE_DATA_DIR=str(data_dir), **redis_environment(redis_url))
    return subprocess.run(VITRINE + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_an_erased_person_stays_erased_through_replay_and_their_log_lines_go(tmp_path: Path, redis_url: str,
                                                                             data_dir: Path) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
                   "2024-01-01T10:00:00Z,ve,erin,purchase,85123A,1,2.95\n"
                   "2024-01-02T10:00:00Z,vf,frank,purchase,85123A,1,2.95\n"
                   "2024-02-01T10:00:00Z,ve,erin,purchase,22086,1,9.0\n")
    done = vitrine(["import", "--events", str(csv)], data_dir, redis_url)  # its segment is closed when it exits
    assert done.returncode == 0, done.stderr
    with sync_client(redis_url) as r:
        assert r.exists("c:{erin}") and r.exists("c:{frank}")

    from api.app import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(data_dir, redis_url))) as client:
        r = client.delete("/v1/people/erin", headers=ADMIN)
        assert r.status_code == 200 and r.json()["log_segments_rewritten"] == 1, r.text
    [segment] = segments(data_dir / "log")
    assert b"erin" not in segment.read_bytes() and b"frank" in segment.read_bytes()
    reset = vitrine(["replay", "--reset"], data_dir, redis_url)
    assert reset.returncode == 0, reset.stderr
    assert person_keys(redis_url, ["erin", "{ve}"]) == [] and person_keys(redis_url, ["frank"])
