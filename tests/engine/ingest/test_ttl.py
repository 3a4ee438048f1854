"""How long a visitor's profile is kept: a visit that viewed no item and decided nothing is kept for
VITRINE_VISITOR_BOUNCE_TTL_S, everyone else for VITRINE_VISITOR_TTL_S; through the HTTP API against
a real Redis."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import redis
from fastapi.testclient import TestClient

from engine.store import keys
from tests.conftest import ADMIN


def post(client: TestClient, *events: dict, headers: dict[str, str] | None = None) -> None:
    r = client.post("/v1/events", json={"events": list(events)}, headers=headers)
    assert r.status_code == 200 and r.json()["profiles_updated"], r.text


def kept_for(client: TestClient, visitor: str) -> str:
    """Which TTL the visitor's profile has: "bounce" or "visitor"."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    with redis.Redis.from_url(settings.redis_url) as r:
        ttl = r.ttl(keys.visitor(visitor))
    assert settings.visitor_bounce_ttl_s < settings.visitor_ttl_s
    for name, full in (("bounce", settings.visitor_bounce_ttl_s), ("visitor", settings.visitor_ttl_s)):
        if full - 60 < ttl <= full:
            return name
    raise AssertionError(f"TTL {ttl}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def test_a_bounce_is_kept_for_less_time_until_the_visitor_views_an_item(client: TestClient) -> None:
    post(client, {"event_id": "b1", "type": "page_view", "visitor_id": "b", "properties": {"category": "home"}})
    assert kept_for(client, "b") == "bounce"
    post(client, {"event_id": "b2", "type": "search", "visitor_id": "b", "properties": {"query": "mug"}})
    assert kept_for(client, "b") == "bounce"
    post(client, {"event_id": "b3", "type": "product_view", "visitor_id": "b", "item_id": "85123A"})
    assert kept_for(client, "b") == "visitor"


def test_a_second_visit_gets_the_full_ttl(client: TestClient) -> None:
    earlier = time.time() - 3 * 3600
    post(client, {"event_id": "r1", "type": "page_view", "visitor_id": "r", "timestamp": iso(earlier)})
    assert kept_for(client, "r") == "bounce"
    post(client, {"event_id": "r2", "type": "page_view", "visitor_id": "r"})  # back after the visit ended
    assert kept_for(client, "r") == "visitor"


def test_a_choice_or_a_login_in_the_first_visit_gets_the_full_ttl(client: TestClient) -> None:
    """A withdrawal must outlive the bounce TTL: forgetting it would profile the person again."""
    post(client, {"event_id": "c1", "type": "consent", "visitor_id": "c", "properties": {"granted": False}})
    assert kept_for(client, "c") == "visitor"
    post(client, {"event_id": "l1", "type": "login", "visitor_id": "l", "customer_id": "cust-l"}, headers=ADMIN)
    assert kept_for(client, "l") == "visitor"
    post(client, {"event_id": "a1", "type": "add_to_cart", "visitor_id": "a", "item_id": "85123A"})
    assert kept_for(client, "a") == "visitor"
