"""Merchandising end to end: the API, a real Redis, the demo shop and a rules file on disk."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from engine.merch.experiments import in_control_group
from engine.merch.schema import ControlGroup
from tests.conftest import ADMIN, LiveServer, make_settings
from tests.redis_clients import async_client, sync_client

KITCHEN = """placements:
  home:
    filter: {category_in: [kitchen]}
"""
SEASONAL = """placements:
  home:
    filter: {category_in: [seasonal]}
"""


def version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.fixture
def shop(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]) -> dict[str, Any]:
    """The demo catalogue in Redis, and where the rules file goes."""
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    items_csv, _ = demo_files
    items = list(read_items(items_csv, ImportReport()))

    async def load() -> None:
        client = async_client(redis_url)
        await upsert_items(client, items)
        await client.aclose()

    asyncio.run(load())
    return {"data_dir": data_dir, "redis_url": redis_url, "rules": data_dir / "rules.yaml",
            "category": {i.item_id: i.category for i in items}}


@pytest.fixture
def app_with_rules(shop: dict[str, Any]) -> Iterator[tuple[TestClient, Path]]:
    shop["rules"].write_text(KITCHEN)
    from api.app import create_app

    settings = make_settings(shop["data_dir"], shop["redis_url"], rules_file=shop["rules"])
    with TestClient(create_app(settings)) as client:
        yield client, shop["rules"]


def recs(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/recommendations", params={"placement": "home", "n": 10, **params})
    assert r.status_code == 200, r.text
    return r.json()


def post_events(client: TestClient, events: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
    r = client.post("/v1/events", json={"events": events}, headers=headers)
    assert r.status_code == 200, r.text


def reload_rules(client: TestClient, path: Path, text: str) -> Any:
    path.write_text(text)
    return client.post("/v1/admin/rules/reload", headers=ADMIN)


def ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, timezone.utc).isoformat()


# ------------------------------------------------------------------ rules file and hot reload


def test_responses_carry_the_rules_version(app_with_rules: tuple[TestClient, Path], shop: dict[str, Any]) -> None:
    client, _ = app_with_rules
    body = recs(client, visitor_id="v1")
    assert body["rules_version"] == version(KITCHEN)
    assert body["items"] and all(shop["category"][i["item_id"]].startswith("kitchen.") for i in body["items"])


def test_without_a_file_the_built_in_rules_apply(shop: dict[str, Any]) -> None:
    from api.app import create_app

    with TestClient(create_app(make_settings(shop["data_dir"], shop["redis_url"]))) as client:
        body = recs(client, visitor_id="v1")
        assert body["rules_version"] == "default" and len(body["items"]) == 10
        assert client.get("/v1/admin/rules", headers=ADMIN).json()["status"] == "ok"
        assert client.post("/v1/admin/rules/reload", headers=ADMIN).status_code == 409


def test_the_file_is_picked_up_without_restart(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    path.write_text(SEASONAL)  # no reload call: the poll (0.2 s in tests) finds it
    deadline = time.monotonic() + 10
    while recs(client, visitor_id="v1")["rules_version"] != version(SEASONAL):
        assert time.monotonic() < deadline, "the new rules were not picked up"
        time.sleep(0.05)


def test_an_invalid_file_is_rejected_and_the_last_good_rules_keep_serving(
        app_with_rules: tuple[TestClient, Path], caplog: pytest.LogCaptureFixture) -> None:
    client, path = app_with_rules
    bad = "placements:\n  home:\n    filter:\n      category_in: [kitchen]\n      in_stok: true\n"
    with caplog.at_level(logging.ERROR, logger="engine.merch.live"):
        r = reload_rules(client, path, bad)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "placements.home.filter.in_stok", "message": "unknown field",
                                   "file": str(path), "line": 5}]
    assert f"{path}:5: placements.home.filter.in_stok: unknown field" in caplog.text
    assert recs(client, visitor_id="v1")["rules_version"] == version(KITCHEN)
    status = client.get("/v1/admin/rules", headers=ADMIN).json()
    assert status["status"] == "error" and status["version"] == version(KITCHEN)
    assert status["errors"][0]["line"] == 5 and status["error_since"] is not None
    time.sleep(0.5)  # polls see the same bad bytes: logged once, not on every tick
    assert caplog.text.count("in_stok") == 1
    assert reload_rules(client, path, SEASONAL).json()["version"] == version(SEASONAL)
    assert client.get("/v1/admin/rules", headers=ADMIN).json()["errors"] == []


def test_a_missing_file_keeps_the_last_good_rules(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    path.unlink()
    r = client.post("/v1/admin/rules/reload", headers=ADMIN)
    assert r.status_code == 422 and "cannot read the rules file" in r.json()["error"]
    assert recs(client, visitor_id="v1")["rules_version"] == version(KITCHEN)


UNREADABLE = {  # each raised out of the reader, killing the poll loop, before it was a RulesError
    "form feed": ("placements:\n  home:\x0c\n    candidates: 40\n", 2,
                  "invalid YAML: character U+000C (a control character) at column 8 is not allowed in YAML text; "
                  "remove it"),
    "10,000 [": ("placements: " + "[" * 10_000 + "]" * 10_000 + "\n", 1, "invalid YAML: nested more than 32 levels deep"),
    "not UTF-8": ("placements:\n  home: {candidates: \udce9}\n", 2,
                  "not UTF-8 text: byte 0xe9 at byte 22 of the line (invalid continuation byte); save the file as UTF-8"),
}


def write_bytes(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("text, line, message", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_file_is_an_error_and_the_poll_goes_on(app_with_rules: tuple[TestClient, Path], text: str,
                                                             line: int, message: str) -> None:
    client, path = app_with_rules
    error = {"field": "rules", "line": line, "file": str(path), "message": message}
    write_bytes(path, text)
    r = client.post("/v1/admin/rules/reload", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"] == [error]
    status = client.get("/v1/admin/rules", headers=ADMIN).json()
    assert status["status"] == "error" and status["version"] == version(KITCHEN)
    assert [{**e, "field": e["field"] or "rules"} for e in status["errors"]] == [error]
    assert recs(client, visitor_id="v1")["rules_version"] == version(KITCHEN)
    if "\udce9" not in text:  # a draft is JSON text: it cannot hold bytes that are not UTF-8
        r = client.post("/v1/admin/preview", headers=ADMIN, json={"rules": text, "visitor_id": "v1"})
        assert r.status_code == 422 and r.json()["errors"] == [{**error, "file": "draft"}]
    path.write_text(SEASONAL)  # the poll loop is alive: a good file goes live without a reload call
    deadline = time.monotonic() + 10
    while recs(client, visitor_id="v1")["rules_version"] != version(SEASONAL):
        assert time.monotonic() < deadline, "the poll loop no longer picks files up"
        time.sleep(0.05)
    assert client.get("/v1/admin/rules", headers=ADMIN).json()["status"] == "ok"


@pytest.mark.parametrize("text, line, message", list(UNREADABLE.values())[:2], ids=list(UNREADABLE)[:2])
def test_a_start_with_an_unreadable_file_serves_the_built_in_rules(shop: dict[str, Any], text: str, line: int,
                                                                   message: str) -> None:
    from api.app import create_app

    write_bytes(shop["rules"], text)
    settings = make_settings(shop["data_dir"], shop["redis_url"], rules_file=shop["rules"])
    with TestClient(create_app(settings)) as client:
        status = client.get("/v1/admin/rules", headers=ADMIN).json()
        assert status["status"] == "error" and status["version"] == "default"
        assert [(e["line"], e["message"]) for e in status["errors"]] == [(line, message)]
        body = recs(client, visitor_id="v1")
        assert body["rules_version"] == "default" and len(body["items"]) == 10


def test_pins_to_items_missing_from_the_catalogue_are_rejected(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    r = reload_rules(client, path, "placements:\n  home:\n    pins:\n      - {item: '99999ZZ', slot: 1}\n")
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"field": "placements.home.pins[0].item", "line": 4, "file": str(path),
                                     "message": "item '99999ZZ' is not in the catalogue"}


def test_hot_reload_under_concurrent_requests(shop: dict[str, Any]) -> None:
    """Requests in flight while the file flips between two versions and a broken one: every
    response is a 200 computed entirely under one good version."""
    from api.app import create_app

    path = shop["rules"]
    path.write_text(KITCHEN)
    settings = make_settings(shop["data_dir"], shop["redis_url"], rules_file=path, model_poll_s=0.01)
    expected = {version(KITCHEN): "kitchen.", version(SEASONAL): "seasonal."}
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer(server_url: str, worker: int) -> None:
        with httpx.Client(base_url=server_url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                r = http.get("/v1/recommendations", params={"placement": "home", "visitor_id": f"w{worker}-{i}"})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                prefix = expected.get(body["rules_version"])
                seen.add(body["rules_version"])
                if prefix is None or not body["items"] or not all(
                        shop["category"][it["item_id"]].startswith(prefix) for it in body["items"]):
                    failures.append(f"inconsistent: {body['rules_version']} {body['items'][:3]}")

    with LiveServer(create_app(settings)) as server:
        threads = [threading.Thread(target=hammer, args=(server.url, w)) for w in range(4)]
        for t in threads:
            t.start()
        for text in [SEASONAL, "placements: {home: {filter: {category_in: kitchen}}}\n", KITCHEN, SEASONAL,
                     "placements: [\n", KITCHEN] * 3:
            path.write_text(text)
            time.sleep(0.15)
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert seen == set(expected)


# ------------------------------------------------------------------ preview


def test_preview_shows_draft_and_live_side_by_side_and_changes_nothing(
        app_with_rules: tuple[TestClient, Path], shop: dict[str, Any]) -> None:
    client, _ = app_with_rules
    store = sync_client(shop["redis_url"])
    before = {k: store.dump(k) for k in store.keys("*")}
    draft = SEASONAL + """campaigns:
  xmas:
    start: 2026-12-01
    end: 2026-12-25
    placements:
      home:
        pins: [{item: '85123A', slot: 1}]
"""
    r = client.post("/v1/admin/preview", headers=ADMIN, json={
        "rules": draft, "visitor_id": "v-preview", "placements": ["home"], "n": 5,
        "at": "2026-12-10T12:00:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    live, drafted = body["live"]["recommendations"]["home"], body["draft"]["recommendations"]["home"]
    assert (live["rules_version"], drafted["rules_version"]) == (version(KITCHEN), version(draft))
    assert all(shop["category"][i["item_id"]].startswith("kitchen.") for i in live["items"])
    assert (drafted["items"][0]["item_id"], drafted["items"][0]["reason"]) == ("85123A", "pinned")
    assert all(shop["category"][i["item_id"]].startswith("seasonal.") for i in drafted["items"][1:])
    # a day after the campaign the pin is gone
    after = client.post("/v1/admin/preview", headers=ADMIN, json={
        "rules": draft, "visitor_id": "v-preview", "placements": ["home"], "at": "2026-12-26T00:00:00Z"}).json()
    assert after["draft"]["recommendations"]["home"]["items"][0]["reason"] != "pinned"
    assert {k: store.dump(k) for k in store.keys("*")} == before
    assert recs(client, visitor_id="v-preview")["rules_version"] == version(KITCHEN)


def test_an_invalid_draft_is_a_422_naming_the_line(app_with_rules: tuple[TestClient, Path]) -> None:
    client, _ = app_with_rules
    r = client.post("/v1/admin/preview", headers=ADMIN, json={
        "rules": "placements:\n  home:\n    diversity: {max_per_category: 0}\n", "visitor_id": "v1"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "placements.home.diversity.max_per_category", "line": 3,
                                   "file": "draft", "message": "Input should be greater than or equal to 1 (got 0)"}]
    r = client.post("/v1/admin/preview", headers=ADMIN, json={"rules": "", "visitor": "v1"})
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {"visitor_id", "visitor"}
    assert client.post("/v1/admin/preview", json={"rules": "", "visitor_id": "v1"}).status_code == 401


def test_preview_refuses_what_is_not_json_or_not_its_types(app_with_rules: tuple[TestClient, Path]) -> None:
    client, _ = app_with_rules
    r = client.post("/v1/admin/preview", headers={**ADMIN, "content-type": "application/json"}, content=b"{")
    assert r.status_code == 400 and r.json()["errors"] == [{"field": "body", "message": "is not valid JSON"}]
    r = client.post("/v1/admin/preview", headers=ADMIN, json={"rules": "", "visitor_id": "v1", "at": 0, "n": "5"})
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {"at", "n"}


def test_a_draft_with_a_control_character_is_a_422_naming_its_line(app_with_rules: tuple[TestClient, Path]) -> None:
    client, _ = app_with_rules
    r = client.post("/v1/admin/preview", headers=ADMIN, json={"rules": "placements:\n  home: \x0e\n",
                                                              "visitor_id": "v1"})
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 2


# ------------------------------------------------------------------ anti-repetition


def test_items_shown_too_often_are_left_out(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, KITCHEN + "    repetition: {max: 2, window: 1d}\n").status_code == 200
    first = [i["item_id"] for i in recs(client, visitor_id="rep")["items"]]
    shown = first[:3]
    for k, ts in enumerate((ago(3 * 86400), ago(3600), ago(60))):  # the first is outside the window
        post_events(client, [{"event_id": f"imp-{k}", "type": "block_impression", "visitor_id": "rep",
                              "timestamp": ts, "properties": {"block_id": "reco:home"},
                              "items": [{"item_id": i} for i in shown]}])
    post_events(client, [{"event_id": "imp-2", "type": "block_impression", "visitor_id": "rep",  # a replay
                          "properties": {"block_id": "reco:home"}, "items": [{"item_id": first[3]}] * 2}])
    again = [i["item_id"] for i in recs(client, visitor_id="rep")["items"]]
    assert not set(shown) & set(again) and first[3] in again
    assert [i["item_id"] for i in recs(client, visitor_id="someone-else")["items"]] == first


# ------------------------------------------------------------------ content blocks

BLOCKS = KITCHEN + """campaigns:
  xmas:
    cap: {max: 3, window: 1d}
blocks:
  - id: vip
    slot: home_top
    kind: promo
    format: html
    priority: 30
    campaign: xmas
    when: {customer_tier: [gold], logged_in: true}
    title: "<b>Bonjour {first_name|cher client}</b>"
    body: "Vos {favourite_category} préférés"
  - id: cart-nudge
    slot: home_top
    priority: 20
    campaign: xmas
    when: {cart: not_empty}
    title: "{cart_items} items are waiting"
    cap: {max: 2, window: 1d}
  - id: welcome-back
    slot: home_top
    priority: 10
    when: {visitor: returning, has_last_visit_items: true}
    title: "Welcome back {first_name}"
    body: "Still thinking about {last_visit_item}?"
    recommendations: {placement: recent, n: 3}
  - id: hello
    slot: home_top
    title: "Hello {first_name|there}"
category_names: {kitchen.mugs: "mugs & cups"}
"""


def block(client: TestClient, visitor: str, slot: str = "home_top") -> dict[str, Any] | None:
    r = client.get(f"/v1/blocks/{slot}", params={"visitor_id": visitor})
    assert r.status_code == 200, r.text
    return r.json()["block"]


def test_blocks_follow_eligibility_priority_and_templates(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCKS).status_code == 200
    assert block(client, "new-visitor")["id"] == "hello"
    assert block(client, "new-visitor")["title"] == "Hello there"
    # a returning visitor with items from the last visit: welcome-back with a strip of those items
    post_events(client, [{"event_id": "wb-1", "type": "product_view", "visitor_id": "back", "item_id": "85123A",
                          "timestamp": ago(2 * 86400)},
                         {"event_id": "wb-2", "type": "page_view", "visitor_id": "back"}])
    b = block(client, "back")
    assert b["id"] == "welcome-back" and b["title"] == "Welcome back "
    assert b["body"] == "Still thinking about White Hanging Heart T-Light Holder?"
    assert [i["item_id"] for i in b["recommendations"]["items"]] == ["85123A"]
    # cart not empty beats welcome-back
    post_events(client, [{"event_id": "wb-3", "type": "add_to_cart", "visitor_id": "back", "item_id": "22086",
                          "quantity": 2}])
    assert block(client, "back")["title"] == "2 items are waiting"
    # a gold customer (tier and first name come from login properties), hostile name escaped in HTML
    post_events(client, [{"event_id": "vip-1", "type": "login", "visitor_id": "vip", "customer_id": "c-gold",
                          "properties": {"tier": "gold", "first_name": "<img src=x onerror=alert(1)>"}},
                         {"event_id": "vip-2", "type": "product_view", "visitor_id": "vip", "item_id": "21212",
                          "customer_id": "c-gold"}], headers=ADMIN)  # the shop's backend: trusted
    vip = block(client, "vip")
    assert vip["id"] == "vip" and vip["format"] == "html"
    assert vip["title"] == "<b>Bonjour &lt;img src=x onerror=alert(1)&gt;</b>"
    assert vip["body"] == "Vos baking préférés"


def test_capped_blocks_give_way_to_the_next_eligible_across_windows(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCKS + "frequency: {max: 4, window: 1w}\n").status_code == 200
    post_events(client, [{"event_id": "c-1", "type": "add_to_cart", "visitor_id": "cap", "item_id": "22086"}])

    def seen(event_id: str, block_id: str, seconds_ago: float) -> None:
        post_events(client, [{"event_id": event_id, "type": "block_impression", "visitor_id": "cap",
                              "timestamp": ago(seconds_ago), "properties": {"block_id": block_id}}])

    assert block(client, "cap")["id"] == "cart-nudge"
    seen("i-1", "cart-nudge", 30 * 3600)  # yesterday's window
    seen("i-2", "cart-nudge", 26 * 3600)
    assert block(client, "cap")["id"] == "cart-nudge"  # the 1d window holds none of them
    seen("i-3", "cart-nudge", 3600)
    seen("i-3", "cart-nudge", 3600)  # a retried event counts once
    assert block(client, "cap")["id"] == "cart-nudge"
    seen("i-4", "cart-nudge", 60)
    assert block(client, "cap")["id"] == "hello"  # 2 within the day: capped, the next eligible block
    store = sync_client(client.app.state.settings.redis_url)  # type: ignore[attr-defined]
    assert store.ttl("x:{cap}") > 29 * 86400


def test_campaign_cap_counts_all_its_blocks(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCKS).status_code == 200
    post_events(client, [{"event_id": "cc-0", "type": "add_to_cart", "visitor_id": "cc", "item_id": "22086"}])
    for i, block_id in enumerate(["vip", "vip", "cart-nudge"]):  # campaign xmas: 3 a day
        post_events(client, [{"event_id": f"cc-{i + 1}", "type": "block_impression", "visitor_id": "cc",
                              "properties": {"block_id": block_id}}])
    assert block(client, "cc")["id"] == "hello"


def test_global_cap_across_campaigns(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    text = BLOCKS.replace("  xmas:\n    cap: {max: 3, window: 1d}\n", "  xmas: {}\n") + "frequency: {max: 1, window: 1w}\n"
    assert reload_rules(client, path, text).status_code == 200
    post_events(client, [{"event_id": "g-0", "type": "add_to_cart", "visitor_id": "g", "item_id": "22086"}])
    assert block(client, "g")["id"] == "cart-nudge"
    post_events(client, [{"event_id": "g-1", "type": "block_impression", "visitor_id": "g",
                          "timestamp": ago(5 * 86400), "properties": {"block_id": "vip"}}])
    assert block(client, "g")["id"] == "hello"


def test_unknown_slot_is_a_404(app_with_rules: tuple[TestClient, Path]) -> None:
    client, _ = app_with_rules
    r = client.get("/v1/blocks/nowhere", params={"visitor_id": "v1"})
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "slot"
    assert client.get("/v1/blocks/<script>").status_code in (404, 422)


# ------------------------------------------------------------------ experiments and control group

EXPERIMENT = KITCHEN + """control_group: {share: 30%, salt: cg}
experiments:
  home-test:
    placement: home
    variants:
      - {name: a, weight: 1}
      - {name: b, weight: 1, scenarios: [trending, popular]}
"""


def test_experiment_report_counts_attributed_events_exactly_once(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, EXPERIMENT).status_code == 200
    arms: dict[str, int] = {}
    sent: dict[str, dict[str, float]] = {}
    events: list[dict[str, Any]] = []
    for v in range(60):
        visitor = f"exp-{v}"
        body = recs(client, visitor_id=visitor, n=4)
        arm = body["experiment"]["arm"]
        arms[arm] = arms.get(arm, 0) + 1
        totals = sent.setdefault(arm, {"impressions": 0, "clicks": 0, "conversions": 0, "revenue": 0.0})
        rid, items = body["recommendation_id"], [i["item_id"] for i in body["items"]]
        events.append({"event_id": f"{visitor}-imp", "type": "block_impression", "visitor_id": visitor,
                       "properties": {"block_id": "reco:home", "recommendation_id": rid},
                       "items": [{"item_id": i} for i in items]})
        totals["impressions"] += 1
        if v % 3 == 0:
            events.append({"event_id": f"{visitor}-clk", "type": "recommendation_click", "visitor_id": visitor,
                           "item_id": items[0], "properties": {"recommendation_id": rid}})
            totals["clicks"] += 1
            if v % 2 == 0:
                events.append({"event_id": f"{visitor}-buy", "type": "purchase", "visitor_id": visitor,
                               "items": [{"item_id": items[0], "quantity": 2, "price": 2.5},
                                         {"item_id": items[1], "quantity": 1, "price": 100}]})
                totals["conversions"] += 1
                totals["revenue"] += 5.0
    assert set(arms) == {"a", "b", "control"}
    post_events(client, events[:250])
    post_events(client, events)  # a client retrying everything: no double counts
    r = client.get("/v1/admin/experiments/home-test", headers=ADMIN)
    assert r.status_code == 200
    report = r.json()
    for arm, count in arms.items():
        row = report["arms"][arm]
        assert row["visitors"] == count
        assert (row["impressions"], row["clicks"], row["conversions"], row["revenue"]) == (
            sent[arm]["impressions"], sent[arm]["clicks"], sent[arm]["conversions"], sent[arm]["revenue"])
    assert report["control"] == "control" and "lift_vs_control" in report["arms"]["a"]
    assert client.get("/v1/admin/experiments/nope", headers=ADMIN).status_code == 404


def test_block_recommendations_carry_item_details_when_asked(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, BLOCKS).status_code == 200
    post_events(client, [{"event_id": "wbd-1", "type": "product_view", "visitor_id": "back-d", "item_id": "85123A",
                          "timestamp": ago(2 * 86400)},
                         {"event_id": "wbd-2", "type": "page_view", "visitor_id": "back-d"}])
    r = client.get("/v1/blocks/home_top", params={"visitor_id": "back-d", "fields": "title"})
    assert r.status_code == 200, r.text
    items = r.json()["block"]["recommendations"]["items"]
    assert [i["item_id"] for i in items] == ["85123A"]
    assert items[0]["details"] == {"title": client.get("/v1/items/85123A").json()["title"]}
    r = client.get("/v1/blocks/home_top", params={"visitor_id": "back-d", "fields": "colour"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fields"


def test_experiments_are_listed_with_their_status_and_report(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    later = EXPERIMENT + "  later-test:\n    placement: product\n    start: 2999-01-01\n    variants:\n" \
                         "      - {name: only, weight: 2}\n"
    assert reload_rules(client, path, later).status_code == 200
    body = recs(client, visitor_id="exp-listed", n=4)
    post_events(client, [{"event_id": "exp-listed-imp", "type": "block_impression", "visitor_id": "exp-listed",
                          "properties": {"block_id": "reco:home", "recommendation_id": body["recommendation_id"]},
                          "items": [{"item_id": i["item_id"]} for i in body["items"]]}])
    r = client.get("/v1/admin/experiments", headers=ADMIN)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert [x["id"] for x in listed["experiments"]] == ["home-test", "later-test", "holdout"]
    home, scheduled, holdout = listed["experiments"]
    assert (home["placement"], home["status"], home["control"]) == ("home", "running", "control")
    assert [(v["name"], v["weight"]) for v in home["variants"]] == [("a", 1), ("b", 1)]
    arm = body["experiment"]["arm"]
    assert home["report"]["arms"][arm]["impressions"] == 1
    assert home["report"] == client.get("/v1/admin/experiments/home-test", headers=ADMIN).json()
    assert scheduled["status"] == "scheduled" and scheduled["start"].startswith("2999-01-01")
    assert scheduled["end"] is None
    assert holdout["placement"] is None and holdout["variants"][0]["weight"] == pytest.approx(0.7)
    assert listed["rules_version"] == client.get("/v1/admin/rules", headers=ADMIN).json()["version"]
    assert client.get("/v1/admin/experiments").status_code == 401


def test_control_group_gets_the_non_personalised_baseline(app_with_rules: tuple[TestClient, Path]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, EXPERIMENT).status_code == 200
    group = ControlGroup(share=0.3, salt="cg")
    control = [f"cg-{i}" for i in range(200) if in_control_group(group, f"cg-{i}")][:2]
    treated = next(f"cg-{i}" for i in range(200) if not in_control_group(group, f"cg-{i}"))
    history = [{"event_id": f"h-{v}-{k}", "type": "product_view", "visitor_id": v, "item_id": item}
               for v in (control[0], treated) for k, item in enumerate(["21212", "84991", "22086"])]
    post_events(client, history)
    with_history = recs(client, visitor_id=control[0])
    assert with_history["experiment"] == {"id": "home-test", "arm": "control"}
    assert with_history["items"] == recs(client, visitor_id=control[1])["items"]  # the profile is not used
    assert recs(client, visitor_id=treated)["experiment"]["arm"] in ("a", "b")


def test_exposure_keys_only_for_visitors_who_saw_or_clicked_something(app_with_rules: tuple[TestClient, Path],
                                                                      shop: dict[str, Any]) -> None:
    client, _ = app_with_rules
    post_events(client, [{"event_id": "p-1", "type": "purchase", "visitor_id": "buyer", "item_id": "22086"},
                         {"event_id": "p-2", "type": "product_view", "visitor_id": "buyer", "item_id": "21212"}])
    store = sync_client(shop["redis_url"])
    assert store.exists("v:{buyer}") and not store.exists("x:{buyer}")
    post_events(client, [{"event_id": "p-3", "type": "block_impression", "visitor_id": "buyer",
                          "properties": {"block_id": "hello"}}])
    assert store.exists("x:{buyer}")
    post_events(client, [{"event_id": "p-4", "type": "consent", "visitor_id": "buyer",
                          "properties": {"granted": False}},
                         {"event_id": "p-5", "type": "block_impression", "visitor_id": "buyer",
                          "properties": {"block_id": "hello"}}])
    assert store.get("x:{buyer}") == b"{}\n"  # consent withdrawn: what was shown is forgotten too


def test_forged_recommendation_ids_create_no_counters(app_with_rules: tuple[TestClient, Path],
                                                      shop: dict[str, Any]) -> None:
    client, path = app_with_rules
    assert reload_rules(client, path, EXPERIMENT).status_code == 200
    forged = [f"0123456789abcdef.forged-{i}.x" for i in range(300)] + ["0123456789abcdef.home-test.zz"]
    post_events(client, [{"event_id": f"f-{i}", "type": "block_impression", "visitor_id": "forger",
                          "properties": {"block_id": "reco:home", "recommendation_id": rid}}
                         for i, rid in enumerate(forged)])
    post_events(client, [{"event_id": "f-click", "type": "recommendation_click", "visitor_id": "forger",
                          "item_id": "22086", "properties": {"recommendation_id": forged[0]}}])
    store = sync_client(shop["redis_url"])
    assert list(store.scan_iter("xp:*")) == []
    assert (store.get("x:{forger}") or b"{}\n") == b"{}\n"  # no per-experiment state either
    real = recs(client, visitor_id="forger", n=2)["recommendation_id"]
    post_events(client, [{"event_id": "f-real", "type": "block_impression", "visitor_id": "forger",
                          "items": [{"item_id": "22086"}],
                          "properties": {"block_id": "reco:home", "recommendation_id": real}}])
    assert [k.decode() for k in store.scan_iter("xp:*")] == [f"xp:{real.split('.')[1]}"]
    store.close()
