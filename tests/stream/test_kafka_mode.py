"""Kafka mode end to end: API replicas produce, ``vitrine worker`` processes apply (real broker,
real Redis, real worker processes)."""

from __future__ import annotations

import orjson
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from engine import keys
from engine.settings import Settings
from tests.stream.conftest import wait_until


def visitor(r: redis.Redis, visitor_id: str) -> dict:
    raw = r.get(keys.visitor(visitor_id))
    return orjson.loads(raw) if raw else {}


def test_events_through_the_api_reach_profiles_and_recommendations(kafka_settings: Settings, catalogue: None,
                                                                   start_worker) -> None:
    start_worker()
    r = redis.Redis.from_url(kafka_settings.redis_url)
    with TestClient(create_app(kafka_settings)) as api:
        batch = [{"event_id": f"e-{i}", "type": "product_view", "visitor_id": "v-1", "item_id": item}
                 for i, item in enumerate(["85123A", "71053", "84406B"])]
        response = api.post("/v1/events", json={"events": batch})
        assert response.status_code == 200, response.text
        assert response.json()["profiles_updated"] is False  # the workers apply them
        wait_until(lambda: len(visitor(r, "v-1").get("si", [])) == 3, what="the worker to apply 3 views")
        assert visitor(r, "v-1")["si"] == ["84406B", "71053", "85123A"]
        recent = api.get("/v1/recommendations", params={"placement": "recent", "visitor_id": "v-1"}).json()
        assert [i["item_id"] for i in recent["items"]] == ["84406B", "71053", "85123A"]
