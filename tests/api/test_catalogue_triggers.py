"""Catalogue-driven triggers through the real app: ``PUT /v1/items`` changes an item, its watchers
(the watchers index) get an occurrence, the runner posts it to a real webhook receiver. A second
PUT of the same values fires nothing. A new item reaches the people whose declared favourites match
it (the declared-interest index)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.triggers import keys
from tests.conftest import ADMIN
from tests.engine.triggers.receiver import Receiver
from tests.redis_clients import is_cluster_url, sync_client

SECRET = "whsec-test-0123456789abcdef"
RULES = """
triggers:
  drop:
    kind: price_drop
    min_drop: 10%
    channel: email
    control: 0
    payload: {title: "Cheaper now"}
  restock:
    kind: back_in_stock
    channel: email
    control: 0
  fresh:
    kind: new_item
    channel: email
    control: 0
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as started:
        yield started


@pytest.fixture
def settings_overrides(tmp_path: Path, receiver: Receiver) -> dict[str, object]:
    (tmp_path / "rules.yaml").write_text(RULES)
    # The test runs the triggers' work itself: the background poll waits an hour.
    return {"rules_file": tmp_path / "rules.yaml", "trigger_poll_s": 3600.0, "trigger_webhook_url": receiver.url,
            "trigger_webhook_secret": SECRET}


def put_items(client: TestClient, *items: dict[str, Any]) -> None:
    r = client.put("/v1/items", headers=ADMIN, json={"items": list(items)})
    assert r.status_code == 200, r.text


def opt_in(client: TestClient, *visitors: str) -> None:
    r = client.post("/v1/events", json={"events": [
        {"event_id": f"consent-{v}", "type": "consent", "visitor_id": v,
         "properties": {"purpose": "email", "granted": True}} for v in visitors]})
    assert r.status_code == 200, r.text


def declare(client: TestClient, visitor: str, body: dict[str, Any]) -> None:
    r = client.put(f"/v1/visitors/{visitor}/preferences", json=body)
    assert r.status_code == 200, r.text


def tick(client: TestClient) -> tuple[int, int]:
    return client.portal.call(client.app.state.triggers.tick)


def stats(redis_url: str, trigger: str) -> dict[str, int]:
    client = sync_client(redis_url)
    try:
        counters = client.hgetall(keys.names(is_cluster_url(redis_url)).stats(trigger))
        return {k.decode(): int(v) for k, v in counters.items()}
    finally:
        client.close()


def test_a_price_drop_reaches_only_the_watchers_it_should_once(client: TestClient, receiver: Receiver,
                                                               redis_url: str) -> None:
    put_items(client, {"item_id": "SKU-T1", "title": "Kettle", "price": 20.0})
    opt_in(client, "v-high", "v-low", "v-watch", "v-none")
    declare(client, "v-high", {"price_alerts": [{"item_id": "SKU-T1", "below": 16.0}]})
    declare(client, "v-low", {"price_alerts": [{"item_id": "SKU-T1", "below": 10.0}]})  # below the new price
    declare(client, "v-watch", {"watches": ["SKU-T1"]})
    declare(client, "v-quiet", {"watches": ["SKU-T1"]})  # never opted into email
    declare(client, "v-none", {"watches": ["SKU-OTHER"]})

    put_items(client, {"item_id": "SKU-T1", "price": 19.0})  # 5%: under min_drop
    assert tick(client) == (0, 0)
    put_items(client, {"item_id": "SKU-T1", "price": 15.0})
    put_items(client, {"item_id": "SKU-T1", "price": 15.0})  # the same price again: no change, nothing
    assert tick(client) == (3, 2)
    assert tick(client) == (0, 0)

    assert receiver.bad_signatures == 0
    got = sorted((d["visitor_id"], d["trigger"], d["context"]["item_id"], d["context"]["price"])
                 for d in receiver.received)
    assert got == [("v-high", "drop", "SKU-T1", 15.0), ("v-watch", "drop", "SKU-T1", 15.0)]
    assert len(set(receiver.keys)) == 2
    assert receiver.received[0]["payload"]["title"] == "Cheaper now"
    assert stats(redis_url, "drop") == {"sent:deliveries": 2, "webhook:delivered": 2, "suppressed:no_consent": 1}

    put_items(client, {"item_id": "SKU-T1", "price": 20.0})  # a rise fires nothing
    assert tick(client) == (0, 0)


def test_back_in_stock_after_a_stock_flip_reaches_the_watchers(client: TestClient, receiver: Receiver) -> None:
    put_items(client, {"item_id": "SKU-T2", "title": "Lamp", "price": 30.0, "in_stock": False})
    opt_in(client, "v-watch", "v-none")
    declare(client, "v-watch", {"watches": ["SKU-T2"]})
    declare(client, "v-none", {"watches": ["SKU-OTHER"]})

    put_items(client, {"item_id": "SKU-T2", "title": "Desk lamp"})  # changed, still out of stock
    assert tick(client) == (0, 0)
    put_items(client, {"item_id": "SKU-T2", "in_stock": True})
    put_items(client, {"item_id": "SKU-T2", "in_stock": True})
    assert tick(client) == (1, 1)
    assert [(d["visitor_id"], d["trigger"], d["context"]["item_id"]) for d in receiver.received] == [
        ("v-watch", "restock", "SKU-T2")]


def test_consent_withdrawn_after_the_watch_suppresses(client: TestClient, receiver: Receiver,
                                                     redis_url: str) -> None:
    put_items(client, {"item_id": "SKU-T3", "price": 10.0, "in_stock": False})
    opt_in(client, "v-gone")
    declare(client, "v-gone", {"watches": ["SKU-T3"]})
    r = client.post("/v1/events", json={"event_id": "withdraw", "type": "consent", "visitor_id": "v-gone",
                                        "properties": {"purpose": "email", "granted": False}})
    assert r.status_code == 200, r.text
    put_items(client, {"item_id": "SKU-T3", "in_stock": True})
    assert tick(client) == (1, 0)
    assert receiver.requests == 0
    assert stats(redis_url, "restock") == {"suppressed:no_consent": 1}


def test_a_new_item_reaches_the_people_who_declared_its_category_or_brand(client: TestClient, receiver: Receiver,
                                                                          redis_url: str) -> None:
    opt_in(client, "v-kitchen", "v-mugs", "v-acme", "v-garden")
    declare(client, "v-kitchen", {"favourite_categories": ["kitchen"]})  # above the item's category
    declare(client, "v-mugs", {"favourite_categories": ["kitchen.mugs"]})
    declare(client, "v-acme", {"favourite_brands": ["ACME"]})
    declare(client, "v-garden", {"favourite_categories": ["garden", "kitchenware"]})
    declare(client, "v-quiet", {"favourite_categories": ["kitchen"]})  # never opted into email
    declare(client, "v-changed", {"favourite_categories": ["kitchen"]})
    declare(client, "v-changed", {"favourite_categories": ["garden"]})  # changed their mind

    put_items(client, {"item_id": "SKU-N1", "title": "Mug", "category": "kitchen.mugs", "brand": "Acme",
                       "price": 9.0})
    put_items(client, {"item_id": "SKU-N1", "price": 8.0})  # not new any more: nothing
    put_items(client, {"item_id": "SKU-N2", "category": "kitchen.mugs", "in_stock": False})  # out of stock
    assert tick(client) == (4, 3)
    got = sorted((d["visitor_id"], d["trigger"], d["context"]["item_id"], d["context"]["category"])
                 for d in receiver.received)
    assert got == [("v-acme", "fresh", "SKU-N1", "kitchen.mugs"), ("v-kitchen", "fresh", "SKU-N1", "kitchen.mugs"),
                   ("v-mugs", "fresh", "SKU-N1", "kitchen.mugs")]
    assert stats(redis_url, "fresh") == {"sent:deliveries": 3, "webhook:delivered": 3, "suppressed:no_consent": 1}
    store = sync_client(redis_url)
    assert {m.decode() for m in store.smembers("ic:kitchen")} == {"v:v-kitchen", "v:v-quiet"}
    assert {m.decode() for m in store.smembers("ib:acme")} == {"v:v-acme"}
    store.close()


def test_a_price_drop_reaches_who_viewed_it_repeatedly_or_carted_it(client: TestClient, receiver: Receiver,
                                                                    redis_url: str) -> None:
    """With `min_views` and `carted`, the behaviour watchers (engine.profiles.viewers) are reached too;
    back in stock still reaches only who asked. An erasure removes the person's entries."""
    rules = RULES.replace("    min_drop: 10%\n", "    min_drop: 10%\n    min_views: 3\n    carted: true\n")
    client.app.state.settings.rules_file.write_text(rules)  # type: ignore[attr-defined]
    assert client.app.state.engine.rules.reload(force=True)  # type: ignore[attr-defined]
    put_items(client, {"item_id": "SKU-V1", "title": "Teapot", "price": 40.0, "in_stock": False})
    opt_in(client, "v-looker", "v-glance", "v-cart", "v-gone")

    def events(visitor: str, kind: str, n: int) -> None:
        r = client.post("/v1/events", json={"events": [
            {"event_id": f"{visitor}-{kind}-{i}", "type": kind, "visitor_id": visitor, "item_id": "SKU-V1"}
            for i in range(n)]})
        assert r.status_code == 200, r.text

    events("v-looker", "product_view", 3)
    events("v-glance", "product_view", 2)  # under min_views
    events("v-cart", "add_to_cart", 1)
    events("v-gone", "product_view", 4)
    store = sync_client(redis_url)
    assert {m.decode() for m in store.zrange("wb:SKU-V1", 0, -1)} == {"v:v-looker", "v:v-glance", "v:v-cart",
                                                                      "v:v-gone"}
    assert store.hgetall("wp:v:v-looker") == {b"SKU-V1": b"3"} and store.hgetall("wp:v:v-cart") == {b"+SKU-V1": b"1"}
    assert client.delete("/v1/people/v-gone", headers=ADMIN).status_code == 200
    assert not store.exists("wp:v:v-gone") and store.zscore("wb:SKU-V1", "v:v-gone") is None

    put_items(client, {"item_id": "SKU-V1", "in_stock": True})  # back in stock: nobody asked
    put_items(client, {"item_id": "SKU-V1", "price": 30.0})
    assert tick(client) == (2, 2)
    assert sorted((d["visitor_id"], d["trigger"], d["context"]["price"]) for d in receiver.received) == [
        ("v-cart", "drop", 30.0), ("v-looker", "drop", 30.0)]
    store.close()
