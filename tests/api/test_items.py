"""PUT /v1/items with some fields only: the item changes in those fields and keeps the others,
through the HTTP API against a real Redis."""

from __future__ import annotations

import asyncio

import httpx
from fastapi.testclient import TestClient

from engine.store import keys
from tests.conftest import ADMIN
from tests.flows.test_e2e_live import live  # noqa: F401 - the live-server fixture
from tests.redis_clients import sync_client

MUG = {"item_id": "m1", "title": "Enamel mug", "category": "home.kitchen.mugs", "brand": "Acme", "price": 7.5,
       "in_stock": True, "attributes": {"colour": "blue"}}


def put(client: TestClient | httpx.Client, *items: dict) -> dict:
    r = client.put("/v1/items", headers=ADMIN, json={"items": list(items)})
    assert r.status_code == 200, r.text
    return r.json()


def item(client: TestClient, item_id: str) -> dict:
    r = client.get(f"/v1/items/{item_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    body.pop("added_at")
    return body


def counters(client: TestClient) -> tuple[int, int]:
    """The catalogue's version and growth counters, as stored."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    catalogue = keys.catalogue_keys(settings.redis_cluster)
    with sync_client(settings.redis_url) as r:
        version, grown = r.mget(catalogue.version, catalogue.grown)
    return int(version or 0), int(grown or 0)


def test_a_partial_update_changes_only_the_fields_sent(client: TestClient) -> None:
    put(client, MUG)
    put(client, {"item_id": "m1", "in_stock": False})
    assert item(client, "m1") == {**MUG, "in_stock": False}
    put(client, {"item_id": "m1", "price": 6.0, "attributes": {"colour": "red", "size": "L"}})
    assert item(client, "m1") == {**MUG, "in_stock": False, "price": 6.0, "attributes": {"colour": "red", "size": "L"}}
    # The demo's own item, as the issue reported it: its title, category and price stay.
    before = item(client, "85123A")
    assert before["title"] and before["category"] and before["price"]
    put(client, {"item_id": "85123A", "in_stock": True})
    assert item(client, "85123A") == before


def test_null_clears_an_optional_field_and_empty_values_clear_title_and_attributes(client: TestClient) -> None:
    put(client, MUG)
    put(client, {"item_id": "m1", "price": None, "brand": None, "category": None, "title": "", "attributes": {}})
    assert item(client, "m1") == {"item_id": "m1", "title": "", "in_stock": True, "attributes": {}}


def test_a_refused_field_changes_nothing(client: TestClient) -> None:
    put(client, MUG)
    version = counters(client)[0]
    r = client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "m1", "title": "Other"},
                                                               {"item_id": "m1", "in_stock": None}]})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["items[1].in_stock"]
    assert item(client, "m1") == MUG and counters(client)[0] == version


def test_a_new_item_sent_partially_gets_the_defaults(client: TestClient) -> None:
    put(client, {"item_id": "new1", "price": 2.0})
    assert item(client, "new1") == {"item_id": "new1", "title": "", "price": 2.0, "in_stock": True, "attributes": {}}


def test_every_update_bumps_the_version_and_only_a_return_to_stock_the_growth(client: TestClient) -> None:
    put(client, {**MUG, "in_stock": False})
    version, grown = counters(client)
    put(client, {"item_id": "m1", "price": 5.0})  # out of stock before and after: nothing grows
    assert counters(client) == (version + 1, grown)
    put(client, {"item_id": "m1", "in_stock": True})
    assert counters(client) == (version + 2, grown + 1)
    put(client, {"item_id": "m1", "title": "Mug"})  # in stock before and after
    assert counters(client) == (version + 3, grown + 1)
    put(client, {"item_id": "m1", "in_stock": False}, {"item_id": "m1", "price": 4.0})  # named twice: both apply
    assert item(client, "m1") == {**MUG, "title": "Mug", "price": 4.0, "in_stock": False}


def test_concurrent_partial_updates_of_one_item_all_land(live) -> None:  # noqa: ANN001, F811
    """Each request sends another field of the same item, all at once, to a real server: the
    optimistic transaction re-reads the item when another update got in first, so none is lost."""
    server, _ = live
    with httpx.Client(base_url=server.url) as http:
        put(http, MUG)
    changes = [{"title": "Big mug"}, {"brand": "Other"}, {"price": 9.0}, {"category": "home.dining"},
               {"in_stock": False}, {"attributes": {"colour": "green"}}]

    async def send() -> None:
        async with httpx.AsyncClient(base_url=server.url) as http:
            replies = await asyncio.gather(*(http.put("/v1/items", headers=ADMIN,
                                                      json={"items": [{"item_id": "m1", **change}]})
                                             for change in changes))
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]

    asyncio.run(send())
    with httpx.Client(base_url=server.url) as http:
        stored = http.get("/v1/items/m1").json()
    stored.pop("added_at")
    expected = dict(MUG)
    for change in changes:
        expected.update(change)
    assert stored == expected
