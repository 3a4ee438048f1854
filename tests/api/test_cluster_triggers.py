"""Triggers through the real app on a real three-primary Redis Cluster (tests/redis_cluster.py),
posted to a real webhook receiver: an abandoned cart and a back-in-stock each delivered once, the
pressure cap and a consent withdrawal honoured, the report, pull API and conversions answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store import keys
from engine.store.connect import connect_cluster
from engine.triggers import keys as trigger_keys
from tests.api.web.test_http import _signed_in
from tests.conftest import ADMIN, make_settings
from tests.engine.triggers.receiver import Receiver
from tests.redis_cluster import Cluster

SECRET = "whsec-test-0123456789abcdef"
RULES = """
triggers:
  cart:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload: {title: "Your cart"}
  restock:
    kind: back_in_stock
    channel: email
    control: 0
    payload: {title: "Back in stock"}
pressure:
  per_channel: {max: 1, window: 1d}
"""
VISITORS = ("ct-ok", "ct-watch", "ct-gone", "ct-both")


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as started:
        yield started


@pytest.fixture
def client(cluster: Cluster, tmp_path: Path, receiver: Receiver) -> Iterator[TestClient]:
    async def flush() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        await redis.aclose()

    asyncio.run(flush())
    (tmp_path / "rules.yaml").write_text(RULES)
    settings = make_settings(tmp_path, cluster.url, redis_cluster=True, rules_file=tmp_path / "rules.yaml",
                             trigger_poll_s=3600.0, trigger_webhook_url=receiver.url,
                             trigger_webhook_secret=SECRET)  # the test runs the triggers' work itself
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def tick(client: TestClient) -> tuple[int, int]:
    return client.portal.call(client.app.state.triggers.tick)  # type: ignore[no-any-return]


def stored(cluster: Cluster, *names: str) -> list[Any]:
    async def read() -> list[Any]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        try:
            return [await redis.hgetall(name) for name in names]
        finally:
            await redis.aclose()
    return asyncio.run(read())


def test_cart_and_back_in_stock_are_delivered_once_under_caps_and_consent(
        client: TestClient, cluster: Cluster, receiver: Receiver) -> None:
    assert len({cluster.primary_of(keys.visitor(v)).port for v in VISITORS}) >= 2
    assert len({cluster.primary_of(keys.trigger_sends(v)).port for v in VISITORS}) >= 2
    ok(client.put("/v1/items", headers=ADMIN, json={"items": [
        {"item_id": "CT-1", "title": "Mug", "category": "home", "price": 4.0},
        {"item_id": "CT-2", "title": "Lamp", "category": "home", "price": 30.0, "in_stock": False}]}))
    armed = time.time() - 3700  # the carts' reminders are due 100 s ago
    events: list[dict[str, Any]] = [
        {"event_id": f"consent-{v}", "type": "consent", "visitor_id": v, "timestamp": at(armed - 10),
         "properties": {"purpose": "email", "granted": True}} for v in VISITORS]
    events += [{"event_id": f"cart-{v}", "type": "add_to_cart", "visitor_id": v, "item_id": "CT-1",
                "timestamp": at(armed)} for v in ("ct-ok", "ct-gone", "ct-both")]
    events.append({"event_id": "withdrawn", "type": "consent", "visitor_id": "ct-gone", "timestamp": at(armed + 5),
                   "properties": {"purpose": "email", "granted": False}})
    ok(client.post("/v1/events", json={"events": events}))
    for v in ("ct-watch", "ct-both", "ct-gone"):
        ok(client.put(f"/v1/visitors/{v}/preferences", json={"watches": ["CT-2"]}))
    # Twice the same flip: the second is no change. Fanned out after the answer, across slots.
    for _ in range(2):
        ok(client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "CT-2", "in_stock": True}]}))

    assert tick(client) == (6, 3)  # 3 carts + 3 watchers decided; 3 posted
    assert tick(client) == (0, 0)
    got = sorted((doc["trigger"], doc["visitor_id"]) for doc in receiver.received)
    # ct-both's restock is capped (one email a day: its cart reminder went first); ct-gone withdrew.
    assert got == [("cart", "ct-both"), ("cart", "ct-ok"), ("restock", "ct-watch")]
    assert receiver.bad_signatures == 0 and len(set(receiver.keys)) == 3
    assert next(d for d in receiver.received if d["trigger"] == "restock")["context"]["item_id"] == "CT-2"

    cart = ok(client.get("/v1/admin/triggers/cart", headers=ADMIN))
    restock = ok(client.get("/v1/admin/triggers/restock", headers=ADMIN))
    assert (cart["arms"]["sent"]["deliveries"], cart["suppressed"], cart["webhook"]) == (
        2, {"no_consent": 1}, {"delivered": 2})
    assert (restock["arms"]["sent"]["deliveries"], restock["suppressed"]) == (1, {"capped": 1, "no_consent": 1})
    assert [t["trigger"] for t in ok(client.get("/v1/admin/triggers", headers=ADMIN))["triggers"]] == [
        "cart", "restock"]
    pulled = ok(client.get("/v1/admin/deliveries", headers=ADMIN))["deliveries"]
    assert sorted(d["id"] for d in pulled) == sorted(receiver.keys)

    # A purchase converts: the person's touch read in their slot, the counters written in {tg}.
    ok(client.post("/v1/events", json={"event_id": "buy", "type": "purchase", "visitor_id": "ct-ok",
                                       "item_id": "CT-1", "price": 4.0, "quantity": 2}))
    cart = ok(client.get("/v1/admin/triggers/cart", headers=ADMIN))
    assert (cart["arms"]["sent"]["conversions"], cart["arms"]["sent"]["revenue"]) == (1, 8.0)
    [touches] = stored(cluster, keys.trigger_touches("ct-ok"))
    assert touches.keys() == {b"cart"}
    assert asyncio.run(_zcard(cluster, keys.trigger_sends("ct-both"))) == 1  # the capped restock not recorded
    # The console's triggers page reads the same routes.
    _signed_in(client)
    page = client.get("/console/triggers")
    assert page.status_code == 200, page.text
    assert ">ct-watch</a>" in page.text and ">ct-both</a>" in page.text and "Back in stock" in page.text
    names = trigger_keys.names(True)
    assert {cluster.primary_of(k).port for k in (names.stats("cart"), names.deliveries, trigger_keys.OCCURRENCES)} \
        == {cluster.primary_of("{tg}").port}


async def _zcard(cluster: Cluster, key: str) -> int:
    redis = connect_cluster(cluster.url, timeout_s=5)
    try:
        return int(await redis.zcard(key))
    finally:
        await redis.aclose()
