"""Catalogue and admin endpoints: auth, validation, profiles, readiness, metrics."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from engine.store import keys
from tests.conftest import ADMIN, make_settings
from tests.redis_clients import sync_client


def test_admin_endpoints_need_the_admin_key(client: TestClient) -> None:
    for method, path in (("PUT", "/v1/items"), ("DELETE", "/v1/items"), ("GET", "/v1/profiles/v"),
                         ("GET", "/v1/admin/models"), ("POST", "/v1/admin/models/reload")):
        r = client.request(method, path, json={"items": []})
        assert r.status_code == 401, (method, path)
        r = client.request(method, path, json={"items": []}, headers={"X-API-Key": "wrong"})
        assert r.status_code == 403, (method, path)
    r = client.get("/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN['X-API-Key']}"})
    assert r.status_code == 200


def test_item_upsert_validates_every_item_and_stores_none_on_error(client: TestClient) -> None:
    r = client.put("/v1/items", headers=ADMIN, json={"items": [
        {"item_id": "n1", "title": "Good", "category": "Home.Kitchen", "price": 3.5},
        {"item_id": "n2", "price": -1},
        {"item_id": "n3", "category": "a..b"},
        {"item_id": "n4", "colour": "red"},
        {"title": "no id"},
    ]})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"items[1].price", "items[2].category", "items[3].colour", "items[4].item_id"}
    assert client.get("/v1/items/n1").status_code == 404
    r = client.put("/v1/items", headers=ADMIN, json={"items": [
        {"item_id": "n1", "title": "Good", "category": "Home.Kitchen", "price": 3.5, "brand": "Acme",
         "attributes": {"colour": "red"}}]})
    assert r.status_code == 200 and r.json()["upserted"] == 1
    item = client.get("/v1/items/n1").json()
    assert item["category"] == "home.kitchen" and item["attributes"] == {"colour": "red"}
    added_at = item["added_at"]
    client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "n1", "price": 4.0}]})
    assert client.get("/v1/items/n1").json()["added_at"] == added_at  # first arrival is kept
    for body in (b"nope", b'{"items": 3}', b"[]"):
        r = client.put("/v1/items", headers={**ADMIN, "content-type": "application/json"}, content=body)
        assert r.status_code in (400, 422) and r.json()["errors"]
    r = client.request("DELETE", "/v1/items", headers=ADMIN, json={"item_ids": ["n1", 5, ""]})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["item_ids[1]", "item_ids[2]"]


def test_item_bodies_take_json_types_and_no_unknown_field(client: TestClient) -> None:
    r = client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "n1", "in_stock": 1, "price": "3",
                                                                 "added_at": "1700000000"}]})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"items[0].in_stock", "items[0].price", "items[0].added_at"}
    r = client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "n1", "price": 3}], "replace": True})
    assert r.status_code == 422 and r.json()["errors"] == [{"field": "replace", "message": "unknown field"}]
    r = client.request("DELETE", "/v1/items", headers=ADMIN, json={"item_ids": ["n1"], "all": True})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "all"
    assert client.get("/v1/items/n1").status_code == 404


def test_a_path_id_with_a_trailing_newline_is_invalid(client: TestClient) -> None:
    assert client.get("/v1/items/85123A%0A").status_code == 422
    assert client.get("/v1/profiles/v1%0A", headers=ADMIN).status_code == 422


def test_a_405_names_every_method_of_the_path(client: TestClient) -> None:
    r = client.post("/v1/items", headers=ADMIN, json={"items": []})
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, PUT" and r.json()["error"]


def test_profile_endpoint(client: TestClient) -> None:
    assert client.get("/v1/profiles/nobody", headers=ADMIN).status_code == 404
    client.post("/v1/events", json={"event_id": "q", "type": "search", "visitor_id": "s",
                                    "properties": {"query": "  Christmas Lights "}})
    body = client.get("/v1/profiles/s", headers=ADMIN).json()
    assert body["visitor"]["session"]["searches"] == ["christmas lights"]
    assert body["segments"] == ["new"]
    assert client.get("/v1/profiles/bad id", headers=ADMIN).status_code == 422


def test_site_keys_when_configured(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url, site_keys=["pub-1"])
    with TestClient(create_app(settings)) as client:
        event = {"event_id": "k", "type": "page_view", "visitor_id": "v"}
        assert client.post("/v1/events", json=event).status_code == 401
        assert client.post("/v1/events", json=event, headers={"X-API-Key": "other"}).status_code == 403
        assert client.post("/v1/events", json=event, headers={"X-API-Key": "pub-1"}).status_code == 200
        assert client.get("/v1/recommendations?placement=home", headers={"X-API-Key": "pub-1"}).status_code == 200
        assert client.get("/health").status_code == 200


def test_metrics_count_requests_and_events(client: TestClient) -> None:
    client.post("/v1/events", json={"event_id": "m", "type": "page_view", "visitor_id": "v"})
    client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v"})
    text = client.get("/metrics").text
    assert 'vitrine_http_request_duration_seconds_count{method="GET",route="/v1/recommendations",status="2xx"}' in text
    assert "vitrine_events_accepted_total 1.0" in text


def test_metrics_count_stored_lists_matched_and_not(client: TestClient, redis_url: str) -> None:
    client.post("/v1/events", json={"event_id": "ml", "type": "product_view", "visitor_id": "ml", "item_id": "85123A"})
    r = sync_client(redis_url)
    deadline = time.monotonic() + 5
    while not r.exists(keys.for_you("ml")) and time.monotonic() < deadline:  # stored in the background
        time.sleep(0.01)
    client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "ml"})
    r.delete(keys.for_you("ml"))
    client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "ml"})
    client.get("/v1/recommendations", params={"placement": "popular", "visitor_id": "ml"})  # no for-you in it
    client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "ml", "n": 30})  # more than stored
    text = client.get("/metrics").text
    assert 'vitrine_stored_lists_total{matched="true"} 1.0' in text
    assert 'vitrine_stored_lists_total{matched="false"} 1.0' in text


def test_cors_allowlist(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url, cors_origins=["https://shop.example"])
    with TestClient(create_app(settings)) as client:
        ok = client.options("/v1/events", headers={"Origin": "https://shop.example",
                                                   "Access-Control-Request-Method": "POST"})
        assert ok.headers.get("access-control-allow-origin") == "https://shop.example"
        bad = client.options("/v1/events", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in bad.headers
