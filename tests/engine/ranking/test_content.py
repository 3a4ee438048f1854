"""New items get similar items, and a place in the lists of the items they resemble, before anyone
has interacted with them (engine.catalog.content; pure index, then the real app)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from engine.catalog import Catalogue, Item
from engine.catalog.content import build, tokens
from tests.conftest import ADMIN


def test_features_are_title_words_category_levels_brand_and_price_band() -> None:
    item = Item(item_id="m", title="Blue Enamel Mug, 2 pack", category="home.kitchen.mugs", brand="Acme", price=6.5)
    assert tokens(item) == {"w:blue", "w:enamel", "w:mug", "w:pack", "c:home", "c:home.kitchen",
                            "c:home.kitchen.mugs", "b:acme", "p:2"}


def test_the_nearest_items_share_the_most_telling_features() -> None:
    items = [Item(item_id="mug1", title="Blue enamel mug", category="home.kitchen.mugs", brand="acme", price=6),
             Item(item_id="mug2", title="Red enamel mug", category="home.kitchen.mugs", brand="acme", price=7),
             Item(item_id="plate", title="Blue plate", category="home.kitchen.plates", brand="acme", price=12),
             Item(item_id="lamp", title="Desk lamp", category="home.lights", brand="lumo", price=40),
             Item(item_id="tyre", title="Bike tyre", category="sport.bikes", brand="roll", price=25)]
    index = build(Catalogue(version=1, items={i.item_id: i for i in items}))
    got = index.similar("mug1", k=10)
    assert [i for i, _ in got] == ["mug2", "plate", "lamp"]  # the tyre shares nothing with it
    assert got[0][1] > got[1][1] > got[2][1] > 0
    assert index.similar("unknown") == []


def put(client: TestClient, *items: dict) -> None:
    r = client.put("/v1/items", headers=ADMIN, json={"items": list(items)})
    assert r.status_code == 200, r.text


def reco(client: TestClient, **params: object) -> list[dict]:
    r = client.get("/v1/recommendations", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_new_item_has_similar_items_and_reaches_the_lists_of_items_it_resembles(client: TestClient) -> None:
    model = client.app.state.engine.models.current
    anchor = model.item_ids[int(model.view(client.app.state.engine.catalogue.current).popular_order[0])]
    known = client.get(f"/v1/items/{anchor}", headers=ADMIN).json()
    # (the demo catalogue was loaded after the model was trained: its unsold items are new too)
    put(client, {"item_id": "NEW-1", "title": known["title"], "category": known["category"], "price": known["price"]})

    own_page = reco(client, placement="product", item_id="NEW-1", n=10)
    assert own_page and all(i["reason"] == "similar_content:NEW-1" for i in own_page)
    assert anchor in [i["item_id"] for i in own_page[:3]]

    theirs = reco(client, placement="product", item_id=anchor, n=10)
    assert [i["item_id"] for i in theirs].count("NEW-1") == 1
    entry = next(i for i in theirs if i["item_id"] == "NEW-1")
    assert entry["reason"] == f"similar_content:{anchor}"
    assert [i["item_id"] for i in theirs].index("NEW-1") == 9  # the one exploration slot of ten (default 0.1)
    assert len(reco(client, placement="product", item_id=anchor, n=9)) == 9
    assert "NEW-1" not in [i["item_id"] for i in reco(client, placement="product", item_id=anchor, n=9)]

    put(client, {"item_id": "NEW-1", "in_stock": False})  # what cannot be shown is not explored
    assert "NEW-1" not in [i["item_id"] for i in reco(client, placement="product", item_id=anchor, n=10)]


def popular_item(client: TestClient) -> dict:
    engine = client.app.state.engine
    model = engine.models.current
    anchor = model.item_ids[int(model.view(engine.catalogue.current).popular_order[0])]
    return client.get(f"/v1/items/{anchor}", headers=ADMIN).json()


def test_a_new_item_gets_an_exploration_slot_in_its_category_list_without_retraining(client: TestClient) -> None:
    known = popular_item(client)
    category = known["category"]
    before = reco(client, placement="category", category=category, n=10)
    put(client, {"item_id": "NEW-CAT", "title": "Something else entirely", "category": category, "price": 3.0})

    listed = reco(client, placement="category", category=category, n=10)
    assert [i["item_id"] for i in listed].index("NEW-CAT") == 9  # the one exploration slot of ten
    assert listed[9]["reason"] == "new_arrival"
    assert [i["item_id"] for i in listed[:9]] == [i["item_id"] for i in before[:9]]  # best sellers first
    parent = category.split(".")[0]
    assert "NEW-CAT" in [i["item_id"] for i in reco(client, placement="category", category=parent, n=10)]
    assert "NEW-CAT" not in [i["item_id"] for i in reco(client, placement="category", category=category, n=9)]
    assert "NEW-CAT" not in [i["item_id"] for i in reco(client, placement="category", category="no-such", n=10)]


def test_a_new_item_reaches_the_for_you_list_of_someone_who_viewed_an_alike_item(client: TestClient) -> None:
    known = popular_item(client)
    put(client, {"item_id": "NEW-FY", "title": known["title"], "category": known["category"],
                 "price": known["price"]})
    r = client.post("/v1/events", json={"events": [
        {"event_id": "fy1", "type": "product_view", "visitor_id": "fy-visitor", "item_id": known["item_id"]}]})
    assert r.status_code == 200, r.text

    for_you = reco(client, placement="home", visitor_id="fy-visitor", n=10)
    ids = [i["item_id"] for i in for_you]
    assert ids.index("NEW-FY") == 9
    assert for_you[9]["reason"] == f"similar_content:{known['item_id']}"
    assert "NEW-FY" not in [i["item_id"] for i in reco(client, placement="home", visitor_id="fy-visitor", n=9)]
    # nor to whoever viewed it already
    r = client.post("/v1/events", json={"events": [
        {"event_id": "fy2", "type": "product_view", "visitor_id": "other-visitor", "item_id": "NEW-FY"}]})
    assert r.status_code == 200, r.text
    assert "NEW-FY" not in [i["item_id"] for i in reco(client, placement="home", visitor_id="other-visitor", n=10)]
