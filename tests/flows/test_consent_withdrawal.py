"""Withdrawing consent forgets the person, through the HTTP API against a real Redis.

The person is a customer the served model was trained on (so ``home`` would use their model row),
with a content block that greets them by first name. Their logins and shopping are posted by the
shop's backend (admin key); the withdrawal comes from the browser, which only has its cookie.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from engine.events.history import interactions_from_log
from tests.conftest import ADMIN

RULES = """blocks:
  - id: greeting
    slot: home_top
    title: "Hello {first_name|there}"
"""
PERSONAL = ("for_you", "because_you_", "buy_again", "viewed_before", "recently_viewed")


@pytest.fixture
def settings_overrides(data_dir: Path) -> dict[str, object]:
    (data_dir / "rules.yaml").write_text(RULES)
    return {"rules_file": data_dir / "rules.yaml"}


@pytest.fixture
def customer(client: TestClient) -> str:
    """A customer with a row in the served model, logged in on a laptop and a phone."""
    model = client.app.state.engine.models.current
    customer = next(u for u in model.user_index if u.startswith("c:"))[2:]
    post(client, ADMIN, [
        {"event_id": "l1", "type": "login", "visitor_id": "laptop", "customer_id": customer,
         "properties": {"first_name": "Alice"}},
        {"event_id": "l2", "type": "product_view", "visitor_id": "laptop", "item_id": "22086"},
        {"event_id": "l3", "type": "purchase", "visitor_id": "laptop",
         "items": [{"item_id": "85123A", "quantity": 1, "price": 2.95}]},
        {"event_id": "p1", "type": "login", "visitor_id": "phone", "customer_id": customer},
        {"event_id": "p2", "type": "product_view", "visitor_id": "phone", "item_id": "21232"},
        {"event_id": "p3", "type": "block_impression", "visitor_id": "phone", "properties": {"block_id": "greeting"}},
    ])
    return customer


def post(client: TestClient, headers: dict[str, str] | None, events: list[dict[str, Any]]) -> None:
    r = client.post("/v1/events", json={"events": events}, headers=headers)
    assert r.status_code == 200, r.text
    assert len(r.json()["accepted"]) == len(events) and r.json()["profiles_updated"], r.text


def consent(client: TestClient, event_id: str, visitor: str, granted: bool) -> None:
    post(client, None, [{"event_id": event_id, "type": "consent", "visitor_id": visitor,
                         "properties": {"granted": granted}}])


def reco(client: TestClient, placement: str, headers: dict[str, str] | None = None, **params: Any) -> list[list[str]]:
    r = client.get("/v1/recommendations", params={"placement": placement, "n": 10, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [[i["item_id"], i["reason"]] for i in r.json()["items"]]


def personal(items: list[list[str]]) -> list[str]:
    return [reason for _, reason in items if reason.startswith(PERSONAL)]


def greeting(client: TestClient, visitor: str) -> str:
    r = client.get("/v1/blocks/home_top", params={"visitor_id": visitor})
    assert r.status_code == 200, r.text
    return r.json()["block"]["title"]


def profile(client: TestClient, visitor: str) -> dict[str, Any]:
    r = client.get(f"/v1/profiles/{visitor}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def trained_on(client: TestClient) -> list[tuple[str, str]]:
    """What `vitrine train` would learn from the log: (cookie, item) rows."""
    return [(r.visitor_id, r.item_id) for r in interactions_from_log(client.app.state.engine.settings.log_dir)]


def assert_anonymous(client: TestClient, visitor: str) -> None:
    """What a first-time visitor gets: no history, no model row, no name."""
    home = reco(client, "home", visitor_id=visitor)
    assert home and not personal(home)
    assert home == reco(client, "home", visitor_id="first-timer")
    assert reco(client, "recent", visitor_id=visitor) == []
    assert greeting(client, visitor) == "Hello there"


def test_withdrawal_forgets_the_cookie_and_the_customer_and_stops_personalisation(
        client: TestClient, customer: str, redis_url: str) -> None:
    assert personal(reco(client, "home", visitor_id="laptop"))  # before: personalised
    assert sorted(i for i, _ in reco(client, "recent", visitor_id="laptop")) == ["21232", "22086", "85123A"]
    assert greeting(client, "laptop") == "Hello Alice"

    consent(client, "w1", "laptop", False)

    seen = profile(client, "laptop")
    assert seen["customer_id"] == customer  # the link stays, so a later grant on this cookie lifts it
    visitor = seen["visitor"]
    assert visitor["consent"] is False and visitor["visits"] == 0 and visitor["session"]["items"] == []
    assert visitor["last_visit_items"] == [] and visitor["cart"] == {} and visitor["category_affinity"] == {}
    assert visitor["purchases_before_login"] == {} and visitor["mean_price_viewed"] is None
    person = seen["customer"]
    assert person["consent"] is False and person["orders"] == 0 and person["revenue"] == 0
    assert person["purchases"] == {} and person["recent_items"] == [] and person["category_affinity"] == {}
    assert person["traits"] == {} and person["devices"] == [] and person["first_order"] is None
    assert seen["segments"] == profile(client, "laptop")["segments"]  # stable, and nothing from the past:
    assert "buyer" not in seen["segments"] and "returning" not in seen["segments"]

    assert_anonymous(client, "laptop")
    # the shop naming the customer does not bring them back either (nor their model row)
    home = reco(client, "home", ADMIN, visitor_id="laptop", customer_id=customer)
    assert home and not personal(home)

    post(client, ADMIN, [{"event_id": "l4", "type": "product_view", "visitor_id": "laptop", "item_id": "22423"},
                         {"event_id": "l5", "type": "add_to_cart", "visitor_id": "laptop", "item_id": "22423"}])
    assert profile(client, "laptop") == seen | {"segments": seen["segments"]}  # nothing new is profiled
    assert_anonymous(client, "laptop")


def test_withdrawal_on_one_device_stops_personalisation_on_the_others(
        client: TestClient, customer: str, redis_url: str) -> None:
    assert sorted(i for i, _ in reco(client, "recent", visitor_id="phone")) == ["21232", "22086", "85123A"]
    assert greeting(client, "phone") == "Hello Alice"
    store = redis.Redis.from_url(redis_url)
    assert store.exists("x:{phone}") and ("phone", "21232") in trained_on(client)

    consent(client, "w1", "laptop", False)

    assert_anonymous(client, "phone")
    phone = profile(client, "phone")  # read as forgotten before the phone is seen again
    assert phone["visitor"]["session"]["items"] == [] and phone["visitor"]["visits"] == 0
    assert phone["customer"]["consent"] is False and phone["customer"]["recent_items"] == []

    post(client, None, [{"event_id": "p4", "type": "product_view", "visitor_id": "phone", "item_id": "22423"}])
    assert_anonymous(client, "phone")  # not profiled either
    assert profile(client, "phone")["visitor"]["session"]["items"] == []
    assert store.get("x:{phone}") == b"{}\n"  # what the phone was shown goes too
    assert trained_on(client) == []  # nor trained on, from either cookie


def test_granting_again_resumes_profiling_without_what_was_forgotten(client: TestClient, customer: str) -> None:
    consent(client, "w1", "laptop", False)
    consent(client, "g1", "laptop", True)
    # The served model was trained before the withdrawal: its row for the customer stays unused
    # until the next training (which leaves those events out).
    assert reco(client, "home", visitor_id="laptop") == reco(client, "home", visitor_id="first-timer")
    post(client, None, [{"event_id": "l4", "type": "product_view", "visitor_id": "laptop", "item_id": "22423"}])

    assert [i for i, _ in reco(client, "recent", visitor_id="laptop")] == ["22423"]
    home = reco(client, "home", visitor_id="laptop")
    assert personal(home) and not any(r.endswith(("85123A", "22086")) for r in personal(home))
    seen = profile(client, "laptop")
    assert seen["visitor"]["consent"] is True and seen["customer"]["consent"] is True
    assert seen["customer"]["recent_items"] == ["22423"] and seen["customer"]["purchases"] == {}
    # the phone, not seen since the withdrawal, does not bring its old behaviour back
    assert [i for i, _ in reco(client, "recent", visitor_id="phone")] == ["22423"]
    post(client, None, [{"event_id": "p4", "type": "product_view", "visitor_id": "phone", "item_id": "84991"}])
    assert [i for i, _ in reco(client, "recent", visitor_id="phone")] == ["84991", "22423"]
    assert profile(client, "phone")["visitor"]["session"]["items"] == ["84991"]
    assert trained_on(client) == [("laptop", "22423"), ("phone", "84991")]
