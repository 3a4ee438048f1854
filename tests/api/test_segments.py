"""Segments through the HTTP API against a real Redis: definitions in the rules file, hot reload,
segments in a block, an experiment's eligibility and a placement boost, and GET /v1/admin/segments'
counts on a populated Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_merch import ago, app_with_rules, post_events, recs, reload_rules, shop  # noqa: F401 - fixtures
from tests.conftest import ADMIN, make_settings

SEGMENTS = """segments:
  buyers:
    description: Ordered at least once
    orders: {min: 1}
  kitchen_fans:
    category_affinity: {kitchen: 0.5}
    none_of: [buyers]
"""


def profile(client: TestClient, visitor: str) -> dict[str, Any]:
    r = client.get(f"/v1/profiles/{visitor}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def views(visitor: str, *items: str) -> list[dict[str, Any]]:
    return [{"event_id": f"{visitor}-v{i}", "type": "product_view", "visitor_id": visitor, "item_id": item}
            for i, item in enumerate(items)]


def buy(visitor: str, item: str = "21212", price: float = 10.0) -> dict[str, Any]:
    return {"event_id": f"{visitor}-buy", "type": "purchase", "visitor_id": visitor,
            "items": [{"item_id": item, "quantity": 1, "price": price}]}


def test_definitions_apply_and_a_hot_reload_changes_membership(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, SEGMENTS).status_code == 200
    post_events(client, views("fan", "21212", "84991") + views("shopper", "21212") + [buy("shopper")])
    assert profile(client, "fan")["segments"] == ["new", "kitchen_fans"]
    assert profile(client, "shopper")["segments"] == ["new", "buyers"]
    # buyers now need two orders: the shopper leaves it, and so becomes a kitchen fan
    assert reload_rules(client, path, SEGMENTS.replace("{min: 1}", "{min: 2}")).status_code == 200
    assert profile(client, "shopper")["segments"] == ["new", "kitchen_fans"]
    # a redefined built-in segment: "new" for up to three visits
    assert reload_rules(client, path, SEGMENTS + "  new:\n    visits: {max: 3}\n").status_code == 200
    assert client.get("/v1/admin/segments/new", headers=ADMIN).json()["source"] == "rules"


def test_an_invalid_definition_is_refused_with_its_line_and_the_last_good_rules_stay(
        app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, SEGMENTS).status_code == 200
    r = reload_rules(client, path, SEGMENTS.replace("none_of: [buyers]", "none_of: [byers]"))
    assert r.status_code == 422
    error = r.json()["errors"][0]
    assert (error["line"], error["field"]) == (7, "segments.kitchen_fans.none_of[0]")
    assert "unknown segment 'byers'" in error["message"]
    post_events(client, [buy("still")])
    assert "buyers" in profile(client, "still")["segments"]


BLOCK = SEGMENTS + """blocks:
  - id: for-fans
    slot: home_top
    when: {segments_any: [kitchen_fans]}
    title: "Kitchen week"
  - id: hello
    slot: home_top
    priority: -1
    title: "Hello"
"""


def test_a_segment_selects_who_gets_a_block(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCK).status_code == 200
    post_events(client, views("fan", "21212") + views("other", "85123A"))

    def block(visitor: str) -> str:
        r = client.get("/v1/blocks/home_top", params={"visitor_id": visitor})
        assert r.status_code == 200, r.text
        return r.json()["block"]["id"]

    assert (block("fan"), block("other"), block("nobody")) == ("for-fans", "hello", "hello")


EXPERIMENT = SEGMENTS + """experiments:
  fans-test:
    placement: home
    segments_any: [kitchen_fans]
    variants:
      - {name: a, weight: 1}
      - {name: b, weight: 1, scenarios: [trending, popular]}
"""


def test_only_members_of_the_segment_enter_an_experiment(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, SEGMENTS).status_code == 200
    fans = [f"fan-{i}" for i in range(6)]
    post_events(client, [e for fan in fans for e in views(fan, "21212")] + views("other", "85123A"))
    outside_before = recs(client, visitor_id="other")
    assert reload_rules(client, path, EXPERIMENT).status_code == 200
    arms = {recs(client, visitor_id=fan)["experiment"]["arm"] for fan in fans}
    assert arms and arms <= {"a", "b"}
    outside = recs(client, visitor_id="other")
    assert "experiment" not in outside  # the placement's own rules, as if no experiment ran
    assert "experiment" not in recs(client)  # nobody known: nobody in the segment
    post_events(client, [buy(fans[0])])  # a buyer is no kitchen fan any more: out of the experiment
    assert "experiment" not in recs(client, visitor_id=fans[0])
    assert [i["item_id"] for i in outside["items"]] == [i["item_id"] for i in outside_before["items"]]


BOOST = SEGMENTS + """placements:
  home:
    boosts:
      - {when: {category_in: [garden]}, factor: 100, segments_any: [buyers]}
"""


def test_a_boost_for_one_segment_moves_only_its_members_lists(app_with_rules: tuple[TestClient, Path],
                                                              shop: dict[str, Any]) -> None:  # noqa: F811
    client, path = app_with_rules
    garden = {i for i, c in shop["category"].items() if c and c.startswith("garden")}
    assert garden
    assert reload_rules(client, path, SEGMENTS).status_code == 200
    post_events(client, [buy("buyer", "85123A")])
    before = {v: [i["item_id"] for i in recs(client, visitor_id=v, n=10)["items"]] for v in ("buyer", "browser")}
    assert reload_rules(client, path, BOOST).status_code == 200
    after = {v: [i["item_id"] for i in recs(client, visitor_id=v, n=10)["items"]] for v in ("buyer", "browser")}
    assert after["browser"] == before["browser"]
    boosted = sum(i in garden for i in after["buyer"])
    assert boosted >= max(1, sum(i in garden for i in before["buyer"]))
    assert all(i in garden for i in after["buyer"][:boosted])  # every garden item went to the top
    assert after["buyer"] != before["buyer"]  # and for the buyer, the boost changed the list


# ------------------------------------------------------------------ GET /v1/admin/segments

PEOPLE = 300


def populate(client: TestClient) -> dict[str, set[str]]:
    """300 visitors through POST /v1/events: every third a buyer, every fifth with a cart left two
    hours ago (an earlier visit: they are returning visitors); the rest browse."""
    truth: dict[str, set[str]] = {"buyers": set(), "cart_abandoner": set(), "new": set(), "returning": set()}
    events: list[dict[str, Any]] = []
    for i in range(PEOPLE):
        visitor = f"p-{i}"
        truth["returning" if i % 5 == 0 else "new"].add(visitor)
        events += views(visitor, "85123A")
        if i % 3 == 0:
            events.append(buy(visitor, "21212"))
            truth["buyers"].add(visitor)
        if i % 5 == 0:
            events.append({"event_id": f"{visitor}-cart", "type": "add_to_cart", "visitor_id": visitor,
                           "item_id": "22086", "timestamp": ago(2 * 3600)})
            truth["cart_abandoner"].add(visitor)
    for start in range(0, len(events), 200):
        post_events(client, events[start:start + 200])
    return truth


@pytest.fixture
def sampled(shop: dict[str, Any]) -> Iterator[TestClient]:  # noqa: F811
    """An app that estimates from 100 visitor profiles and recomputes on every call."""
    from api.app import create_app

    shop["rules"].write_text(SEGMENTS)
    settings = make_settings(shop["data_dir"], shop["redis_url"], rules_file=shop["rules"], segment_sample=100,
                             segment_counts_ttl_s=0)
    with TestClient(create_app(settings)) as client:
        yield client


def test_counts_are_estimated_from_a_sample_within_the_stated_tolerance(sampled: TestClient) -> None:
    truth = populate(sampled)
    r = sampled.get("/v1/admin/segments", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample_size"] == 100 and body["count_method"].startswith("estimated from a sample of 100")
    assert abs(body["total"] - PEOPLE) <= 0.2 * PEOPLE
    rows = {s["name"]: s for s in body["segments"]}
    assert [s["name"] for s in body["segments"]] == ["new", "returning", "loyal", "high_value", "cart_abandoner",
                                                     "at_risk", "buyers", "kitchen_fans"]
    assert rows["buyers"]["source"] == "rules" and rows["loyal"]["source"] == "default"
    for name, members in truth.items():
        # 100 of 300 profiles: the standard error of a count is about 10 here; 20% of 300 is 5 of them.
        assert abs(rows[name]["count"] - len(members)) <= 0.2 * PEOPLE, (name, rows[name]["count"], len(members))
        assert 0 < len(rows[name]["sample"]) <= 10 and set(rows[name]["sample"]) <= members
    assert rows["loyal"]["count"] == 0 and rows["loyal"]["sample"] == []
    for visitor in rows["cart_abandoner"]["sample"]:  # the sample's members really are members
        assert "cart_abandoner" in profile(sampled, visitor)["segments"]


def test_counts_are_exact_when_the_sample_holds_everyone(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, SEGMENTS).status_code == 200
    truth = populate(client)
    body = client.get("/v1/admin/segments", headers=ADMIN).json()
    assert body["count_method"] == f"counted over all {PEOPLE} visitor profiles"
    assert (body["sample_size"], body["total"]) == (PEOPLE, PEOPLE)
    rows = {s["name"]: s for s in body["segments"]}
    assert {name: rows[name]["count"] for name in truth} == {name: len(m) for name, m in truth.items()}
    one = client.get("/v1/admin/segments/buyers", headers=ADMIN).json()
    assert (one["count"], one["definition"]) == (len(truth["buyers"]), {"orders": {"min": 1.0}})
    assert one["computed_at"] == body["computed_at"]  # reused within the TTL


def test_bad_input_is_a_4xx_naming_the_field(app_with_rules: tuple[TestClient, Path]) -> None:
    client, _ = app_with_rules
    r = client.get("/v1/admin/segments/nope", headers=ADMIN)
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "name"
    r = client.get("/v1/admin/segments/Bad%20Name!", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    assert client.get("/v1/admin/segments").status_code == 401
