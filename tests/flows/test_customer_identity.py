"""Who may name a customer: a stranger cannot read or take over a customer's profile by typing its id.

The app runs with VITRINE_IDENTITY_SECRET set (as a shop would) and a content block that shows the
customer's first name; alice's history is posted by the shop's backend with the admin key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from engine.profiles.tokens import customer_token, verify_customer_token
from engine.settings import Settings
from tests.conftest import ADMIN

SECRET = "shop-secret-0123456789"
ALICE_RECENT = ["85123A", "22086"]  # bought, viewed: what `recent` shows alice
RULES = """blocks:
  - id: vip
    slot: home_top
    when: {logged_in: true}
    title: "Bonjour {first_name}"
  - id: hello
    slot: home_top
    title: "Hello{first_name| there}"
"""


@pytest.fixture
def settings_overrides(data_dir: Path) -> dict[str, object]:
    (data_dir / "rules.yaml").write_text(RULES)
    return {"identity_secret": SECRET, "rules_file": data_dir / "rules.yaml"}


def alice_shops(client: TestClient) -> None:
    """alice logs in on her laptop, views and buys: posted by the shop's backend (admin key)."""
    r = client.post("/v1/events", headers=ADMIN, json={"events": [
        {"event_id": "a1", "type": "login", "visitor_id": "alice-laptop", "customer_id": "alice",
         "properties": {"first_name": "Alice", "tier": "gold"}},
        {"event_id": "a2", "type": "product_view", "visitor_id": "alice-laptop", "customer_id": "alice",
         "item_id": "22086"},
        {"event_id": "a3", "type": "purchase", "visitor_id": "alice-laptop", "customer_id": "alice",
         "items": [{"item_id": "85123A", "quantity": 1, "price": 2.95}]},
        {"event_id": "m1", "type": "page_view", "visitor_id": "attacker"},  # the attacker has a cookie too
    ]})
    assert r.status_code == 200, r.text


def get(client: TestClient, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    return client.get(path, params=params, headers=headers)


def recent(client: TestClient, headers: dict[str, str] | None = None, **params: Any) -> list[str]:
    r = get(client, "/v1/recommendations", headers, placement="recent", **params)
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def profile(client: TestClient, visitor: str) -> dict[str, Any]:
    return client.get(f"/v1/profiles/{visitor}", headers=ADMIN).json()


# ------------------------------------------------------------------ the token (pure)


def test_token_is_hmac_sha256_hex_of_the_customer_id() -> None:
    # printf alice | openssl dgst -sha256 -hmac shop-secret-0123456789
    assert customer_token(SECRET, "alice") == "8a00c0919dbcb7e3a542992d10381a710215b2699a11a4210e114fc83d4260a7"
    assert verify_customer_token(SECRET, "alice", customer_token(SECRET, "alice"))
    assert not verify_customer_token(SECRET, "alice", customer_token(SECRET, "bob"))
    assert not verify_customer_token(SECRET, "alice", customer_token("another-secret-0123456", "alice"))
    for garbage in (None, 42, ["x"], "", "zoë", "8A00C0919DBCB7E3A542992D10381A710215B2699A11A4210E114FC83D4260A7"):
        assert not verify_customer_token(SECRET, "alice", garbage)


def test_a_short_secret_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="identity_secret"):
        Settings(identity_secret="guessable")


# ------------------------------------------------------------------ reads


def test_a_stranger_cannot_read_a_customers_items_or_traits(client: TestClient) -> None:
    alice_shops(client)
    forged = customer_token("not-the-shop-secret-42", "alice")
    for token in (None, forged, customer_token(SECRET, "bob"), "x" * 64):
        params = {"customer_id": "alice", "visitor_id": "attacker", **({"customer_token": token} if token else {})}
        for path, extra in (("/v1/recommendations", {"placement": "recent"}),
                            ("/v1/recommendations", {"placement": "home"}),
                            ("/v1/blocks/home_top", {})):
            r = get(client, path, **params, **extra)
            assert r.status_code == 403, (path, token, r.text)
            assert r.json()["errors"] == [{"field": "customer_token", "message": (
                "is required with customer_id (HMAC-SHA256 of the customer id with VITRINE_IDENTITY_SECRET, in hex)"
                if token is None else "does not match customer_id")}]
            assert "Alice" not in r.text and "85123A" not in r.text
    # the attacker's own page, without naming alice, knows nothing of her
    assert recent(client, visitor_id="attacker") == []
    assert get(client, "/v1/blocks/home_top", visitor_id="attacker").json()["block"]["title"] == "Hello there"


def test_a_valid_token_or_the_admin_key_reads_the_customer(client: TestClient) -> None:
    alice_shops(client)
    token = customer_token(SECRET, "alice")
    assert recent(client, customer_id="alice", customer_token=token, visitor_id="alice-phone") == ALICE_RECENT
    assert recent(client, ADMIN, customer_id="alice", visitor_id="alice-phone") == ALICE_RECENT
    r = get(client, "/v1/blocks/home_top", customer_id="alice", customer_token=token, visitor_id="alice-phone")
    assert r.status_code == 200 and r.json()["block"]["title"] == "Bonjour Alice"
    home = get(client, "/v1/recommendations", placement="home", customer_id="alice", customer_token=token).json()
    assert home["items"] and "85123A" not in {i["item_id"] for i in home["items"]}  # already bought


def test_a_cookie_stitched_by_a_trusted_login_needs_no_token(client: TestClient) -> None:
    alice_shops(client)
    assert recent(client, visitor_id="alice-laptop") == ALICE_RECENT
    assert get(client, "/v1/blocks/home_top", visitor_id="alice-laptop").json()["block"]["title"] == "Bonjour Alice"


# ------------------------------------------------------------------ events


def test_a_forged_login_does_not_stitch_the_attackers_cookie(client: TestClient) -> None:
    alice_shops(client)
    for event_id, extra, field, message in (
        ("f1", {}, "customer_token", "is required with customer_id"),
        ("f2", {"customer_token": customer_token("not-the-shop-secret-42", "alice")}, "customer_token",
         "does not match customer_id"),
        ("f3", {"customer_token": 12345}, "customer_token", "must be a string"),
    ):
        r = client.post("/v1/events", json={"event_id": event_id, "type": "login", "visitor_id": "attacker",
                                            "customer_id": "alice", **extra})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field and r.json()["errors"][0]["message"].startswith(message)
        assert r.json()["rejected"][0]["event_id"] == event_id
    # any event naming the customer is checked, not only logins
    r = client.post("/v1/events", json={"event_id": "f4", "type": "product_view", "visitor_id": "attacker",
                                        "customer_id": "alice", "item_id": "21232"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_token"
    assert profile(client, "attacker")["customer_id"] is None
    assert recent(client, visitor_id="attacker") == []
    assert get(client, "/v1/blocks/home_top", visitor_id="attacker").json()["block"]["title"] == "Hello there"
    assert "21232" not in profile(client, "alice-laptop")["customer"]["recent_items"]


def test_a_bad_token_in_a_batch_rejects_only_that_event(client: TestClient) -> None:
    alice_shops(client)
    r = client.post("/v1/events", json={"events": [
        {"event_id": "b1", "type": "product_view", "visitor_id": "alice-phone", "item_id": "21232"},
        {"event_id": "b2", "type": "login", "visitor_id": "attacker", "customer_id": "alice",
         "customer_token": customer_token(SECRET, "mallory")},
        {"event_id": "b3", "type": "login", "visitor_id": "alice-phone", "customer_id": "alice",
         "customer_token": customer_token(SECRET, "alice")},
    ]})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [a["event_id"] for a in body["accepted"]] == ["b1", "b3"]
    assert body["rejected"] == [{"index": 1, "event_id": "b2", "errors": [
        {"field": "events[1].customer_token", "message": "does not match customer_id"}]}]
    # the good login stitched alice's phone; the token is checked, then dropped: never logged
    assert profile(client, "alice-phone")["customer_id"] == "alice"
    assert profile(client, "attacker")["customer_id"] is None
    assert recent(client, visitor_id="alice-phone") == ["21232", *ALICE_RECENT]
    logged = [orjson.loads(line) for p in sorted(client.app.state.settings.log_dir.glob("*.jsonl"))
              for line in p.read_bytes().splitlines()]
    assert [e["event_id"] for e in logged] == ["a1", "a2", "a3", "m1", "b1", "b3"]
    assert not any("customer_token" in e for e in logged)


# ------------------------------------------------------------------ secure by default


@pytest.mark.parametrize("settings_overrides", [{}])
def test_without_a_secret_only_the_admin_key_may_name_a_customer(client: TestClient) -> None:
    alice_shops(client)
    message = "needs the admin API key: VITRINE_IDENTITY_SECRET is not set, so customer tokens are not accepted"
    token = customer_token(SECRET, "alice")
    r = get(client, "/v1/recommendations", placement="recent", customer_id="alice", customer_token=token)
    assert r.status_code == 403 and r.json()["errors"] == [{"field": "customer_id", "message": message}]
    assert "VITRINE_IDENTITY_SECRET" in r.json()["error"]
    r = client.post("/v1/events", json={"event_id": "n1", "type": "login", "visitor_id": "attacker",
                                        "customer_id": "alice", "customer_token": token})
    assert r.status_code == 422 and r.json()["errors"] == [{"field": "customer_id", "message": message}]
    assert recent(client, ADMIN, customer_id="alice") == ALICE_RECENT
    assert recent(client, visitor_id="alice-laptop") == ALICE_RECENT


@pytest.mark.parametrize("settings_overrides", [{"site_keys": ["site-key-1"]}])
def test_the_item_endpoint_requires_the_site_key_like_the_other_site_endpoints(client: TestClient) -> None:
    assert client.get("/v1/items/85123A").status_code == 401
    assert client.get("/v1/items/85123A", headers={"X-API-Key": "wrong"}).status_code == 403
    r = client.get("/v1/items/85123A", headers={"X-API-Key": "site-key-1"})
    assert r.status_code == 200 and r.json()["item_id"] == "85123A"
