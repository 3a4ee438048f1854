"""Declared preferences through the HTTP API against a real Redis: PUT/GET, the customer token,
bad input naming each field, wishlists as watches and the watchers index, erase and export,
declared interests in for-you and in block eligibility, and consent."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.profiles.preferences import watchers
from engine.profiles.tokens import customer_token
from tests.conftest import ADMIN
from tests.redis_clients import async_client, sync_client

SECRET = "preferences-test-secret-0123456789"
BODY = {"favourite_categories": ["Kitchen.Mugs", "garden"], "favourite_brands": ["Acme"],
        "price_alerts": [{"item_id": "85123A", "below": 2.5}], "watches": ["22423"],
        "channels": {"email": True, "push": False, "on_site": True}, "source": "account_page"}


@pytest.fixture
def settings_overrides(data_dir: Path) -> dict[str, object]:
    (data_dir / "rules.yaml").write_text(
        "segments:\n  acme_fans:\n    prefers_brand: [Acme]\n"
        "blocks:\n"
        "  - id: for_lovers\n    slot: home_top\n    priority: 10\n    title: \"Your favourite\"\n"
        "    when:\n      declared_categories: [garden]\n"
        "  - id: for_acme_fans\n    slot: home_top\n    priority: 5\n    title: \"Acme news\"\n"
        "    when:\n      segments_any: [acme_fans]\n"
        "  - id: everyone\n    slot: home_top\n    title: \"Hello\"\n")
    return {"identity_secret": SECRET, "rules_file": data_dir / "rules.yaml", "preferences_max_favourites": 3}


def post(client: TestClient, *events: dict[str, Any], headers: dict[str, str] | None = ADMIN) -> None:
    r = client.post("/v1/events", json={"events": list(events)}, headers=headers)
    assert r.status_code == 200, r.text


def watching(redis_url: str, item_id: str) -> set[str]:
    async def read() -> set[str]:
        client = async_client(redis_url)
        try:
            return {w.person for w in await watchers(client, item_id)}
        finally:
            await client.aclose()
    return asyncio.run(read())


def index(redis_url: str, item_id: str) -> set[str]:
    return {m.decode() for m in sync_client(redis_url).zrange(f"w:{item_id}", 0, -1)}


def test_put_then_get_round_trip(client: TestClient, redis_url: str) -> None:
    r = client.put("/v1/visitors/v-pref/preferences", json=BODY)
    assert r.status_code == 200, r.text
    stored = r.json()
    assert client.get("/v1/visitors/v-pref/preferences").json() == stored
    assert stored["favourite_categories"] == ["kitchen.mugs", "garden"] and stored["favourite_brands"] == ["acme"]
    assert stored["price_alerts"] == [{"item_id": "85123A", "below": 2.5}] and stored["watches"] == ["22423"]
    assert stored["customer_id"] is None and stored["source"] == "account_page"
    channels = stored["channels"]
    assert {k: v["state"] for k, v in channels.items()} == {"email": "granted", "push": "withdrawn",
                                                            "on_site": "granted"}
    assert channels["email"]["source"] == "account_page" and channels["email"]["chosen_at"].endswith("Z")
    assert stored["used_for_personalisation"] is True
    assert watching(redis_url, "85123A") == {"v:v-pref"} and watching(redis_url, "22423") == {"v:v-pref"}
    # The channel choices are consent records on the profile (the same store as consent events).
    profile = client.get("/v1/profiles/v-pref", headers=ADMIN).json()
    assert profile["visitor"]["contact_consent"] == {"email": True, "push": False, "on_site": True}
    assert profile["declared_preferences"]["favourite_brands"] == ["acme"]
    # PUT replaces: the alert and the watch taken back leave the watchers index too.
    r = client.put("/v1/visitors/v-pref/preferences", json={"favourite_brands": ["acme"]})
    assert r.status_code == 200, r.text
    assert r.json()["price_alerts"] == [] and r.json()["favourite_categories"] == []
    assert r.json()["channels"]["email"]["state"] == "granted"  # an absent channel keeps its choice
    assert index(redis_url, "85123A") == set() and watching(redis_url, "22423") == set()


def test_a_customers_preferences_need_the_customer_token(client: TestClient) -> None:
    post(client, {"event_id": "l1", "type": "login", "visitor_id": "v-cust", "customer_id": "cust-1"})
    path = "/v1/visitors/v-cust/preferences"
    for params in ({}, {"customer_token": "0" * 64}, {"customer_id": "cust-1"},
                   {"customer_id": "cust-2", "customer_token": customer_token(SECRET, "cust-1")}):
        for call in (client.get(path, params=params), client.put(path, params=params, json=BODY)):
            assert call.status_code == 403, (params, call.text)
            assert call.json()["errors"][0]["field"] == "customer_token"
    token = customer_token(SECRET, "cust-1")
    r = client.put(path, params={"customer_token": token}, json=BODY)
    assert r.status_code == 200, r.text
    assert r.json()["customer_id"] == "cust-1"
    # The customer's preferences, from another of their devices, and with the admin key.
    post(client, {"event_id": "l2", "type": "login", "visitor_id": "v-cust-phone", "customer_id": "cust-1"})
    r = client.get("/v1/visitors/v-cust-phone/preferences", params={"customer_id": "cust-1", "customer_token": token})
    assert r.status_code == 200 and r.json()["favourite_brands"] == ["acme"]
    assert r.json()["channels"]["push"]["state"] == "withdrawn"
    assert client.get(path, headers=ADMIN).json()["favourite_categories"] == ["kitchen.mugs", "garden"]
    view = client.get("/v1/customers/cust-1", headers=ADMIN).json()
    assert view["declared_preferences"]["price_alerts"] == [{"item_id": "85123A", "below": 2.5}]
    assert view["consent"]["on_site"] == "granted"


@pytest.mark.parametrize("body, field", [
    ({"favourite_categories": ["kitchen", "garden", ".bad"]}, "favourite_categories[2]"),
    ({"favourite_categories": ["a", "b", "c", "d"]}, "favourite_categories"),
    ({"favourite_categories": "kitchen"}, "favourite_categories"),
    ({"favourite_brands": [""]}, "favourite_brands[0]"),
    ({"favourite_brands": ["a", "b", "c", "d"]}, "favourite_brands"),
    ({"price_alerts": [{"item_id": "85123A", "below": -1}]}, "price_alerts[0].below"),
    ({"price_alerts": [{"item_id": "85123A", "below": "2"}]}, "price_alerts[0].below"),
    ({"price_alerts": [{"item_id": "85123A"}]}, "price_alerts[0].below"),
    ({"price_alerts": [{"item_id": "bad id", "below": 2}]}, "price_alerts[0].item_id"),
    ({"price_alerts": [{"item_id": "85123A", "below": 2, "x": 1}]}, "price_alerts[0].x"),
    ({"price_alerts": [{"item_id": "85123A", "below": 2}, {"item_id": "85123A", "below": 1}]},
     "price_alerts[1].item_id"),
    ({"watches": ["22423", "no/slash"]}, "watches[1]"),
    ({"channels": {"email": "yes"}}, "channels.email"),
    ({"channels": {"sms": True}}, "channels.sms"),
    ({"source": "x" * 65}, "source"),
    ({"favourites": ["kitchen"]}, "favourites"),
    ([], "body"),
])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    r = client.put("/v1/visitors/v-bad/preferences", json=body)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text
    assert client.get("/v1/visitors/v-bad/preferences").json()["favourite_categories"] == []


def test_bad_requests_other_than_the_body(client: TestClient) -> None:
    r = client.put("/v1/visitors/v-bad/preferences", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = client.put("/v1/visitors/v-bad/preferences", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.get("/v1/visitors/bad%20id/preferences")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "visitor_id"
    r = client.get("/v1/visitors/v-bad/preferences", params={"customer_id": "bad id"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id"


def test_a_wishlist_event_is_a_watch(client: TestClient, redis_url: str) -> None:
    post(client, {"event_id": "w1", "type": "add_to_wishlist", "visitor_id": "v-wish", "item_id": "21232"},
         headers=None)
    assert watching(redis_url, "21232") == {"v:v-wish"}
    assert client.get("/v1/visitors/v-wish/preferences").json()["wishlist"] == ["21232"]
    # At login the wish goes with the cookie's history to the customer; the index follows on read.
    post(client, {"event_id": "w2", "type": "login", "visitor_id": "v-wish", "customer_id": "wisher"})
    assert watching(redis_url, "21232") == {"c:wisher"} and index(redis_url, "21232") == {"c:wisher"}
    # A profiling withdrawal forgets the wishlist (behaviour), and the watch with it.
    post(client, {"event_id": "w3", "type": "consent", "visitor_id": "v-wish", "properties": {"granted": False}},
         headers=None)
    assert watching(redis_url, "21232") == set() and index(redis_url, "21232") == set()
    post(client, {"event_id": "w4", "type": "add_to_wishlist", "visitor_id": "v-wish", "item_id": "21232"},
         headers=None)
    assert watching(redis_url, "21232") == set()  # nothing is profiled while withdrawn


def test_erase_removes_preferences_and_index_entries_and_export_has_them(client: TestClient, redis_url: str) -> None:
    post(client, {"event_id": "e1", "type": "add_to_wishlist", "visitor_id": "v-gone", "item_id": "22086"},
         headers=None)
    assert client.put("/v1/visitors/v-gone/preferences", json=BODY).status_code == 200
    document = client.get("/v1/people/v-gone/export", headers=ADMIN).json()
    assert document["preferences"]["v:v-gone"]["price_alerts"] == [{"item_id": "85123A", "below": 2.5}]
    assert document["profiles"][0]["visitor"]["wishlist"] == ["22086"]
    assert {i: index(redis_url, i) for i in ("85123A", "22423", "22086")} == {
        "85123A": {"v:v-gone"}, "22423": {"v:v-gone"}, "22086": {"v:v-gone"}}
    assert interest_index(redis_url) == {"ic:kitchen.mugs": {"v:v-gone"}, "ic:garden": {"v:v-gone"},
                                         "ib:acme": {"v:v-gone"}}
    assert client.delete("/v1/people/v-gone", headers=ADMIN).status_code == 200
    store = sync_client(redis_url)
    assert not store.exists("pv:{v-gone}", "v:{v-gone}")
    assert interest_index(redis_url) == {}
    assert all(not index(redis_url, i) for i in ("85123A", "22423", "22086"))
    assert client.get("/v1/visitors/v-gone/preferences").json()["favourite_categories"] == []


def interest_index(redis_url: str) -> dict[str, set[str]]:
    """Every declared-interest index set (``ic:``, ``ib:``) and its members."""
    store = sync_client(redis_url)
    try:
        found = [k.decode() for pattern in ("ic:*", "ib:*") for k in store.scan_iter(pattern)]
        return {k: {m.decode() for m in store.smembers(k)} for k in found}
    finally:
        store.close()


def _home(client: TestClient, visitor: str) -> list[dict[str, Any]]:
    r = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": visitor, "n": 10})
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def _category(client: TestClient, avoid: set[str]) -> str:
    """A demo category with many items, none of them in ``avoid``'s categories."""
    catalogue = client.app.state.engine.catalogue.current  # type: ignore[attr-defined]
    counts = Counter(info.category for info in (catalogue.info(i) for i in catalogue.items) if info and info.category)
    return next(c for c, _ in counts.most_common() if c not in avoid)


def test_a_declared_category_lifts_its_items_in_for_you(client: TestClient) -> None:
    post(client, *({"event_id": f"r{i}", "type": "product_view", "visitor_id": "v-reco", "item_id": item}
                   for i, item in enumerate(("85123A", "71053", "84406B"))), headers=None)
    before = _home(client, "v-reco")
    catalogue = client.app.state.engine.catalogue.current  # type: ignore[attr-defined]
    category_of = lambda item: (catalogue.info(item).category if catalogue.info(item) else None)  # noqa: E731
    favourite = _category(client, {category_of(i["item_id"]) for i in before})
    assert client.put("/v1/visitors/v-reco/preferences", json={"favourite_categories": [favourite]}).status_code == 200
    after = _home(client, "v-reco")
    lifted = [i for i in after if category_of(i["item_id"]) == favourite]
    assert lifted and all(i["reason"] == "declared_interest" for i in lifted)
    assert not any(category_of(i["item_id"]) == favourite for i in before)
    # Withdrawn profiling: the favourites stay on record but shape nothing.
    post(client, {"event_id": "r-no", "type": "consent", "visitor_id": "v-reco", "properties": {"granted": False}},
         headers=None)
    assert all(i["reason"] != "declared_interest" for i in _home(client, "v-reco"))
    prefs = client.get("/v1/visitors/v-reco/preferences").json()
    assert prefs["favourite_categories"] == [favourite] and prefs["used_for_personalisation"] is False


def test_block_eligibility_by_declared_interest(client: TestClient) -> None:
    def block() -> str:
        r = client.get("/v1/blocks/home_top", params={"visitor_id": "v-block"})
        assert r.status_code == 200, r.text
        return r.json()["block"]["id"]  # type: ignore[no-any-return]

    assert block() == "everyone"
    client.put("/v1/visitors/v-block/preferences", json={"favourite_categories": ["garden.tools"]})
    assert block() == "for_lovers"  # garden.tools is below garden
    client.put("/v1/visitors/v-block/preferences", json={"favourite_categories": ["gardening"]})
    assert block() == "everyone"
    client.put("/v1/visitors/v-block/preferences", json={"favourite_brands": ["acme"]})
    assert block() == "for_acme_fans"  # a segment defined over declared preferences
    assert "acme_fans" in client.get("/v1/profiles/v-block", headers=ADMIN).json()["segments"]


def test_a_customer_merge_joins_their_preferences_and_watches(client: TestClient, redis_url: str) -> None:
    for customer, device in (("keep", "v-keep"), ("dup", "v-dup")):
        post(client, {"event_id": f"{customer}-in", "type": "login", "visitor_id": device, "customer_id": customer})
    post(client, {"event_id": "dup-w", "type": "add_to_wishlist", "visitor_id": "v-dup", "item_id": "21232"})
    put = "/v1/visitors/{}/preferences"
    r = client.put(put.format("v-keep"), params={"customer_token": customer_token(SECRET, "keep")},
                   json={"favourite_categories": ["garden"], "price_alerts": [{"item_id": "85123A", "below": 3.0}]})
    assert r.status_code == 200, r.text
    r = client.put(put.format("v-dup"), params={"customer_token": customer_token(SECRET, "dup")},
                   json={"favourite_brands": ["acme"], "price_alerts": [{"item_id": "85123A", "below": 2.0}],
                         "watches": ["22423"]})
    assert r.status_code == 200, r.text
    assert client.post("/v1/customers/merge", json={"into": "keep", "from": ["dup"]}, headers=ADMIN).status_code == 200
    joined = client.get(put.format("v-dup"), params={"customer_token": customer_token(SECRET, "keep")}).json()
    assert joined["favourite_categories"] == ["garden"] and joined["favourite_brands"] == ["acme"]
    assert joined["price_alerts"] == [{"item_id": "85123A", "below": 2.0}]  # the lower alert
    assert joined["watches"] == ["22423"] and joined["wishlist"] == ["21232"]
    assert {i: index(redis_url, i) for i in ("85123A", "22423", "21232")} == {
        "85123A": {"c:keep"}, "22423": {"c:keep"}, "21232": {"c:keep"}}
    assert interest_index(redis_url) == {"ic:garden": {"c:keep"}, "ib:acme": {"c:keep"}}
    assert not sync_client(redis_url).exists("pc:{dup}")
