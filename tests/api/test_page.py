"""POST /v1/page: one request for a page's strips and blocks gives what the single routes give."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.test_merch import BLOCKS, ago, app_with_rules, post_events, reload_rules, shop  # noqa: F401 - fixtures


def page(client: TestClient, body: dict, **headers: str) -> dict:
    r = client.post("/v1/page", json=body, headers=headers or None)
    assert r.status_code == 200, r.text
    return r.json()


def without_ids(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "recommendation_id"}


def test_one_request_answers_as_the_single_routes_do(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCKS).status_code == 200
    post_events(client, [{"event_id": "pg-1", "type": "product_view", "visitor_id": "pg", "item_id": "85123A",
                          "timestamp": ago(2 * 86400)},
                         {"event_id": "pg-2", "type": "page_view", "visitor_id": "pg"}])
    body = page(client, {"visitor_id": "pg", "fields": "title,price",
                         "placements": [{"placement": "home", "n": 4},
                                        {"placement": "product", "item_id": "85123A", "n": 3}],
                         "blocks": [{"slot": "home_top"}]})
    home, product = body["placements"]
    assert home["placement"] == "home" and product["placement"] == "product"
    assert 0 < len(home["items"]) <= 4 and 0 < len(product["items"]) <= 3
    assert all(set(i["details"]) <= {"title", "price"} and "title" in i["details"] for i in home["items"])
    single = client.get("/v1/recommendations", params={"placement": "product", "item_id": "85123A", "n": 3,
                                                       "visitor_id": "pg", "fields": "title,price"}).json()
    assert without_ids(product) == without_ids(single)
    [block] = body["blocks"]
    assert block["slot"] == "home_top" and block["block"]["id"] == "welcome-back"
    assert block["block"]["recommendations"]["items"][0]["details"]["title"]


def test_a_new_visitor_gets_one_cookie_and_a_script_may_send_text_plain(client: TestClient) -> None:
    r = client.post("/v1/page", content=b'{"placements": [{"placement": "home"}]}',
                    headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200, r.text
    assert r.cookies.get("vt_vid")
    assert r.json()["blocks"] == [] and r.json()["placements"][0]["items"]


def test_a_slot_the_rules_no_longer_define_leaves_the_strips(client: TestClient) -> None:
    body = page(client, {"visitor_id": "pg-gone", "placements": [{"placement": "home", "n": 2}],
                         "blocks": [{"slot": "gone_slot"}]})
    assert len(body["placements"][0]["items"]) == 2
    [block] = body["blocks"]
    assert block["block"] is None and "gone_slot" in block["unknown_slot"]
    assert client.get("/v1/blocks/gone_slot").status_code == 404


def test_bad_input_is_a_4xx_naming_the_field(client: TestClient) -> None:
    cases = [
        ({"placements": [{"placement": "home", "n": 0}]}, "placements[0].n"),
        ({"placements": [{"placement": "home"}, {"placement": "nowhere"}]}, "placements[1].placement"),
        ({"blocks": [{"slot": "Not A Name"}]}, "blocks[0].slot"),
        ({"placements": [{"placement": "home", "colour": "red"}]}, "placements[0].colour"),
        ({"placements": [{"placement": "home"}], "fields": "colour"}, "fields"),
        ({"placements": [{"placement": "home"}] * 21}, "placements"),
        ({}, "placements"),
        ({"placements": [{"placement": "home"}], "customer_id": "13085", "customer_token": "forged"}, None),
    ]
    for body, field in cases:
        r = client.post("/v1/page", json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        if field is None:
            assert r.status_code == 403, r.text
        else:
            assert r.status_code == 422 and field in [e["field"] for e in r.json()["errors"]], (body, r.text)
    r = client.post("/v1/page", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = client.post("/v1/page", content=b"{}", headers={"content-type": "application/xml"})
    assert r.status_code == 415 and r.json()["errors"][0]["field"] == "content-type"
