"""The request shapes a shop page asks for: filters and pages on GET /v1/recommendations, and
POST /v1/rerank (real app, real Redis, the demo model and catalogue)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from engine.ranking.rerank import MAX_ITEMS
from tests.conftest import ADMIN


def reco(client: TestClient, **params: object) -> dict:
    r = client.get("/v1/recommendations", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def item(client: TestClient, item_id: str) -> dict:
    return client.get(f"/v1/items/{item_id}", headers=ADMIN).json()


def view(client: TestClient, visitor: str, *items: str) -> None:
    events = [{"event_id": f"{visitor}-{n}", "type": "product_view", "visitor_id": visitor, "item_id": i}
              for n, i in enumerate(items)]
    assert client.post("/v1/events", json={"events": events}).status_code == 200


def popular_ids(client: TestClient, n: int) -> list[str]:
    return ids(reco(client, placement="popular", n=n))


@pytest.mark.parametrize("placement", ["home", "product", "popular", "trending", "cart"])
def test_every_item_matches_the_category_and_price_filters(client: TestClient, placement: str) -> None:
    view(client, "f1", *popular_ids(client, 3))
    body = reco(client, placement=placement, visitor_id="f1", item_id="85123A", category="kitchen",
                price_max=3, n=20)
    assert body["items"], placement
    for entry in body["items"]:
        found = item(client, entry["item_id"])
        assert found["category"].startswith("kitchen.") and found["price"] <= 3, (placement, found)


def test_several_categories_and_a_price_floor(client: TestClient) -> None:
    body = reco(client, placement="popular", category=["kitchen", "garden"], price_min=5, n=30)
    categories = {item(client, i)["category"].split(".")[0] for i in ids(body)}
    assert categories <= {"kitchen", "garden"} and len(body["items"]) == 30
    assert all(item(client, i)["price"] >= 5 for i in ids(body))


def test_brand_and_attribute_filters_and_out_of_stock_on_request(client: TestClient) -> None:
    top = popular_ids(client, 6)
    r = client.put("/v1/items", headers=ADMIN, json={"items": [
        {"item_id": top[3], "brand": "Acme", "attributes": {"colour": "red", "size": 2}},
        {"item_id": top[4], "brand": "ACME", "attributes": {"colour": "blue", "size": 2.0}},
        {"item_id": top[5], "brand": "Other", "attributes": {"colour": "red"}},
        {"item_id": top[0], "in_stock": False, "brand": "Acme"}]})
    assert r.status_code == 200, r.text
    assert set(ids(reco(client, placement="popular", brand="acme", n=10))) == {top[3], top[4]}
    assert ids(reco(client, placement="popular", **{"attr[colour]": "red"}, n=10)) == [top[3], top[5]]
    assert set(ids(reco(client, placement="popular", **{"attr[size]": "2"}, n=10))) == {top[3], top[4]}
    assert ids(reco(client, placement="popular", brand="acme", **{"attr[colour]": "blue"})) == [top[4]]
    assert ids(reco(client, placement="popular", brand=["acme", "other"], in_stock="false", n=2)) == top[:1] + top[3:4]
    assert top[0] not in ids(reco(client, placement="popular", n=10))  # stock still counts by default


def test_a_filter_nothing_matches_gives_an_empty_list(client: TestClient) -> None:
    assert reco(client, placement="home", visitor_id="nobody", brand="no-such-brand")["items"] == []


@pytest.mark.parametrize(("params", "field"), [
    ({"price_min": "-1"}, "price_min"),
    ({"price_max": "cheap"}, "price_max"),
    ({"price_min": "10", "price_max": "5"}, "price_max"),
    ({"in_stock": "maybe"}, "in_stock"),
    ({"category": ".kitchen"}, "category"),
    ({"category": ["kitchen", "a..b"]}, "category"),
    ({"brand": ""}, "brand"),
    ({"attr[colour]": "x" * 101}, "attr[colour]"),
    ({"offset": "-1"}, "offset"),
    ({"offset": "495", "n": "10"}, "offset"),
    ({"recommendation_id": "0123456789abcdef"}, "recommendation_id"),
    ({"offset": "10", "recommendation_id": "not-an-id"}, "recommendation_id"),
])
def test_bad_values_are_a_422_naming_the_parameter(client: TestClient, params: dict, field: str) -> None:
    r = client.get("/v1/recommendations", params={"placement": "home", **params})
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def test_pages_of_one_list_never_repeat_an_item(client: TestClient) -> None:
    view(client, "pager", *popular_ids(client, 2))
    first = reco(client, placement="home", visitor_id="pager", n=5, offset=0)
    rid = first["recommendation_id"]
    second = reco(client, placement="home", visitor_id="pager", n=5, offset=5, recommendation_id=rid)
    assert second["recommendation_id"] == rid and len(second["items"]) == 5
    # The visitor acts between pages: the ranking moves, the pages still do not overlap.
    view(client, "pager2", *ids(first)[:2])
    view(client, "pager", ids(second)[0], ids(first)[0])
    third = reco(client, placement="home", visitor_id="pager", n=5, offset=10, recommendation_id=rid)
    shown = ids(first) + ids(second) + ids(third)
    assert len(shown) == len(set(shown)) == 15
    # A page asked again comes back as it was.
    assert reco(client, placement="home", visitor_id="pager", n=5, offset=5, recommendation_id=rid) == second
    # Without the id, a page is a fresh list's slice.
    fresh = reco(client, placement="popular", n=5, offset=5)
    assert ids(fresh) == popular_ids(client, 10)[5:]


def test_pages_are_the_visitors_own(client: TestClient) -> None:
    first = reco(client, placement="popular", visitor_id="a", n=3, offset=0)
    other = reco(client, placement="popular", visitor_id="b", n=3, offset=3,
                 recommendation_id=first["recommendation_id"])
    assert ids(other) == popular_ids(client, 6)[3:]  # b has no list under a's id: a fresh one


def rerank(client: TestClient, **body: object) -> dict:
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_rerank_orders_the_given_items_for_the_person(client: TestClient) -> None:
    top = popular_ids(client, 30)
    given = [top[20], "NO-SUCH-ITEM", top[2], top[11], top[20], top[5]]
    anonymous = rerank(client, items=given, visitor_id="new-person")
    assert ids(anonymous) == [top[2], top[5], top[11], top[20], "NO-SUCH-ITEM"]
    assert [i["reason"] for i in anonymous["items"]] == ["popular"] * 4 + ["as_given"]

    view(client, "ranker", top[11], top[20])
    personal = rerank(client, items=given, visitor_id="ranker")
    assert sorted(ids(personal)) == sorted(set(given)) and ids(personal)[-1] == "NO-SUCH-ITEM"
    scores = [i["score"] for i in personal["items"][:-1]]
    assert scores == sorted(scores, reverse=True)
    reasons = {i["item_id"]: i["reason"] for i in personal["items"]}
    assert reasons[top[11]] == reasons[top[20]] == "viewed_before"
    assert ids(personal)[:2] != ids(anonymous)[:2]  # the history moved the order


def test_rerank_bad_bodies_are_4xx_naming_the_field(client: TestClient) -> None:
    too_many = [f"i{n}" for n in range(MAX_ITEMS + 1)]
    for body, field in (({"items": []}, "items"), ({"items": too_many}, "items"), ({"items": ["bad id"]}, "items[0]"),
                        ({"items": ["a"], "extra": 1}, "extra"), ({}, "items")):
        r = client.post("/v1/rerank", json=body)
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.json())
    r = client.post("/v1/rerank", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = client.post("/v1/rerank", json={"items": ["a"], "customer_id": "c1"})
    assert r.status_code == 403
