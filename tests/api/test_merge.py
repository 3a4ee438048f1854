"""Merging customer ids of one person through the HTTP API against a real Redis: counts once,
idempotent in any order, most restrictive consent, events and reads for a merged id land on the
survivor, automatic merges on a shared hashed email, export and erase, bad input."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from engine.customers import audit
from engine.events.erased import digest
from tests.api.test_people import DAY, iso, person_keys, post, shop, settings_overrides  # noqa: F401
from tests.conftest import ADMIN
from tests.redis_clients import sync_client

SHA = hashlib.sha256(b"ann@example.com").hexdigest()


def merge(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/customers/merge", json=body, headers={**ADMIN, **(headers or {})})


def view(client: TestClient, customer_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/customers/{customer_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def second_account(client: TestClient, customer: str, device: str, now: float) -> None:
    """One more order, and one block seen, under another customer id."""
    post(client, [
        {"event_id": f"{customer}-l1", "type": "login", "visitor_id": device, "customer_id": customer,
         "properties": {"first_name": "Ann", "tier": "gold"}, "timestamp": iso(now - 300 * DAY)},
        {"event_id": f"{customer}-o1", "type": "purchase", "visitor_id": device, "timestamp": iso(now - 300 * DAY),
         "items": [{"item_id": "22086", "quantity": 1, "price": 10.0}]},
        {"event_id": f"{customer}-b1", "type": "block_impression", "visitor_id": device,
         "properties": {"block_id": "greeting"}},
    ])


def test_merge_counts_once_and_is_idempotent_in_any_order(client: TestClient, data_dir: Path) -> None:
    now = time.time()
    shop(client, "ann", "ann-laptop", "ann-phone", now)
    second_account(client, "ann2", "ann2-tablet", now)
    before, after_ann = view(client, "ann2"), view(client, "ann")
    r = merge(client, {"into": "ann", "from": ["ann2"]}, {"X-Requested-By": "ticket #7"})
    assert r.status_code == 200, r.text
    assert r.json() == {"into": "ann", "merged": ["ann2"], "already": []}
    merged = view(client, "ann")
    assert merged["rfm"]["frequency"] == 4 and merged["rfm"]["monetary"] == 75.9
    assert set(merged["identity"]["devices"]) == {"ann-laptop", "ann-phone", "ann2-tablet"}
    assert merged["identity"]["merged_ids"] == ["ann2"]
    assert merged["identity"]["first_seen"] == before["identity"]["first_seen"]  # the earlier of the two
    assert merged["identity"]["last_seen"] == max(before["identity"]["last_seen"], after_ann["identity"]["last_seen"])
    assert merged["traits"] == {"first_name": "Alice", "tier": "gold"}  # ann's name wins, ann2's tier is added
    assert merged["pressure"]["1d"]["block_impressions"] == 2  # one per cookie: counted once each
    for body in ({"into": "ann", "from": ["ann2"]}, {"into": "ann2", "from": ["ann"]}):
        r = merge(client, body)
        assert r.status_code == 200 and r.json()["merged"] == [], r.text
    assert view(client, "ann") == merged
    assert view(client, "ann2") == merged  # the merged id reads as the survivor
    records = [a for a in audit.read(data_dir) if a["action"] == "merge"]
    assert len(records) == 1 and records[0]["by"] == "ticket #7" and records[0]["auto"] is False
    assert records[0]["customers"] == [digest("ann"), digest("ann2")] and "ann2" not in str(records)


def test_events_for_the_merged_id_land_on_the_survivor(client: TestClient, redis_url: str) -> None:
    now = time.time()
    shop(client, "bea", "bea-laptop", "bea-phone", now)
    second_account(client, "bea2", "bea2-tablet", now)
    assert merge(client, {"into": "bea", "from": ["bea2"]}).status_code == 200
    post(client, [
        {"event_id": "bea2-l2", "type": "login", "visitor_id": "bea2-new", "customer_id": "bea2"},
        {"event_id": "bea2-o2", "type": "purchase", "visitor_id": "bea2-new", "items": [{"item_id": "21232",
                                                                                        "price": 3.0}]},
        {"event_id": "bea2-o3", "type": "purchase", "visitor_id": "bea2-tablet", "items": [{"item_id": "21232",
                                                                                           "price": 2.0}]},
    ])
    after = view(client, "bea")
    assert after["rfm"]["frequency"] == 6 and after["rfm"]["monetary"] == 80.9
    assert "bea2-new" in after["identity"]["devices"]
    profile = client.get("/v1/profiles/bea2-tablet", headers=ADMIN).json()
    assert profile["customer_id"] == "bea" and profile["customer"]["orders"] == 6
    with sync_client(redis_url) as r:
        assert not r.exists("c:{bea2}")


def test_the_most_restrictive_consent_wins(client: TestClient) -> None:
    now = time.time()
    shop(client, "cat", "cat-laptop", "cat-phone", now)
    second_account(client, "cat2", "cat2-tablet", now)
    post(client, [{"event_id": "cat-e", "type": "consent", "visitor_id": "cat-laptop",
                   "properties": {"granted": True, "purpose": "email"}},
                  {"event_id": "cat-p", "type": "consent", "visitor_id": "cat-laptop",
                   "properties": {"granted": True, "purpose": "push"}},
                  {"event_id": "cat2-e", "type": "consent", "visitor_id": "cat2-tablet",
                   "properties": {"granted": False, "purpose": "email"}}], headers=None)
    assert merge(client, {"into": "cat", "from": ["cat2"]}).status_code == 200
    consent = view(client, "cat")["consent"]
    assert consent["email"] == "withdrawn" and consent["push"] == "granted"

    shop(client, "dan", "dan-laptop", "dan-phone", now)
    second_account(client, "dan2", "dan2-tablet", now)
    post(client, [{"event_id": "dan-g", "type": "consent", "visitor_id": "dan-laptop",
                   "properties": {"granted": True}},
                  {"event_id": "dan2-w", "type": "consent", "visitor_id": "dan2-tablet",
                   "properties": {"granted": False}}], headers=None)
    assert merge(client, {"into": "dan", "from": ["dan2"]}).status_code == 200
    merged = view(client, "dan")
    assert merged["consent"]["profiling"] == "withdrawn" and merged["rfm"]["frequency"] == 0
    profile = client.get("/v1/profiles/dan-laptop", headers=ADMIN).json()
    assert profile["visitor"].get("session_items", []) == []  # the other cookies' behaviour is forgotten too


def test_a_shared_hashed_email_merges_automatically(client: TestClient, data_dir: Path) -> None:
    now = time.time()
    second_account(client, "eve-old", "eve-laptop", now)
    post(client, [{"event_id": "eo-l", "type": "login", "visitor_id": "eve-laptop", "customer_id": "eve-old",
                   "properties": {"email_sha256": SHA}}])
    post(client, [{"event_id": "en-l", "type": "login", "visitor_id": "eve-phone", "customer_id": "eve-new",
                   "properties": {"email_sha256": SHA.upper()}},
                  {"event_id": "en-o", "type": "purchase", "visitor_id": "eve-phone",
                   "items": [{"item_id": "21232", "price": 4.0}]}])
    merged = view(client, "eve-new")
    assert merged["customer_id"] == "eve-old"  # the older record survives
    assert merged["rfm"]["frequency"] == 2 and merged["identity"]["merged_ids"] == ["eve-new"]
    records = [a for a in audit.read(data_dir) if a["action"] == "merge"]
    assert len(records) == 1 and records[0]["auto"] is True and records[0]["by"] == "login"
    assert SHA not in (data_dir / audit.FILE).read_text()
    r = client.post("/v1/events", json={"events": [
        {"event_id": "ok", "type": "page_view", "visitor_id": "x1"},
        {"event_id": "bad", "type": "login", "visitor_id": "x1", "customer_id": "x",
         "properties": {"email_sha256": "ann@example.com"}}]})
    assert r.status_code == 207 and [a["event_id"] for a in r.json()["accepted"]] == ["ok"], r.text
    assert r.json()["rejected"][0]["errors"][0]["field"] == "events[1].properties.email_sha256"


def test_export_shows_the_merge_and_erase_covers_both(client: TestClient, redis_url: str) -> None:
    now = time.time()
    shop(client, "fay", "fay-laptop", "fay-phone", now)
    second_account(client, "fay2", "fay2-tablet", now)
    shop(client, "gus", "gus-laptop", "gus-phone", now)
    post(client, [{"event_id": "fay2-l", "type": "login", "visitor_id": "fay2-tablet", "customer_id": "fay2",
                   "properties": {"email_sha256": SHA}}])
    assert merge(client, {"into": "fay", "from": ["fay2"]}, {"X-Requested-By": "ticket 9"}).status_code == 200
    r = client.get("/v1/people/fay2/export", headers=ADMIN)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ids"]["customer_ids"] == ["fay", "fay2"] and doc["ids"]["email_sha256"] == [SHA]
    assert [(m["customer_id"], m["by"], m["auto"]) for m in doc["merges"]] == [("fay2", "ticket 9", False)]
    assert {e["event_id"] for e in doc["events"]} >= {"fay-o1", "fay2-o1"}
    r = client.delete("/v1/people/fay2", headers=ADMIN)  # by the merged id: finds the survivor
    assert r.status_code == 200, r.text
    assert person_keys(redis_url, ["fay", SHA]) == []
    assert view(client, "gus")["rfm"]["frequency"] == 3
    assert client.get("/v1/customers/fay", headers=ADMIN).status_code == 404
    r = merge(client, {"into": "gus", "from": ["fay2"]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "from[0]", r.text


def test_bad_input_names_the_field(client: TestClient) -> None:
    now = time.time()
    shop(client, "hal", "hal-laptop", "hal-phone", now)
    second_account(client, "hal2", "hal2-tablet", now)
    cases = [
        ({"from": ["hal2"]}, 422, "into"),
        ({"into": "hal"}, 422, "from"),
        ({"into": "bad id", "from": ["hal2"]}, 422, "into"),
        ({"into": 7, "from": ["hal2"]}, 422, "into"),
        ({"into": "hal", "from": []}, 422, "from"),
        ({"into": "hal", "from": "hal2"}, 422, "from"),
        ({"into": "hal", "from": ["hal2", "bad id"]}, 422, "from[1]"),
        ({"into": "hal", "from": ["hal2"], "extra": 1}, 422, "extra"),
        ({"into": "hal", "from": ["hal"]}, 422, "from[0]"),
        ({"into": "hal", "from": [f"x{i}" for i in range(21)]}, 422, "from"),
        ({"into": "nobody", "from": ["hal2"]}, 404, "into"),
        ({"into": "hal", "from": ["hal2", "nobody"]}, 404, "from[1]"),
        ([1, 2], 422, "body"),
    ]
    for body, status, field in cases:
        r = merge(client, body)
        assert r.status_code == status, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = client.post("/v1/customers/merge", content=b"{nope", headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = client.post("/v1/customers/merge", content=b"{}", headers={**ADMIN, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["errors"][0]["field"] == "content-type"
    r = merge(client, {"into": "hal", "from": ["hal2"]}, {"X-Requested-By": "x" * 200})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "X-Requested-By"
    r = client.post("/v1/customers/merge", json={"into": "hal", "from": ["hal2"]})
    assert r.status_code in (401, 403)
    assert view(client, "hal")["rfm"]["frequency"] == 3  # nothing merged by any of these
