"""Opt-in consent (``VITRINE_CONSENT_REQUIRED``) and Global Privacy Control, through the HTTP API
against a real Redis.

Opt-in: nobody is profiled before a grant. GPC: a request sent with ``Sec-GPC: 1`` withdraws
consent for its visitor, whatever its events say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from engine.store import keys
from engine.events.log import read_raw
from engine.events.history import interactions_from_log
from tests.conftest import ADMIN
from tests.flows.test_consent_withdrawal import (RULES, assert_anonymous, consent, customer, greeting, personal,  # noqa: F401
                                           post, profile, reco)

GPC = {"Sec-GPC": "1"}
OPT_IN = pytest.mark.parametrize("settings_overrides", [True], indirect=True, ids=["opt-in"])


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, data_dir: Path) -> dict[str, object]:
    (data_dir / "rules.yaml").write_text(RULES)
    return {"rules_file": data_dir / "rules.yaml", "consent_required": getattr(request, "param", False)}


def trained_on(client: TestClient) -> list[tuple[str, str]]:
    """What `vitrine train` would learn from the log under the app's settings: (cookie, item) rows."""
    settings = client.app.state.engine.settings
    return [(r.visitor_id, r.item_id) for r in interactions_from_log(settings.log_dir, settings.consent_required)]


def views(client: TestClient, headers: dict[str, str] | None, visitor: str, *pairs: tuple[str, str],
          customer_id: str | None = None) -> None:
    post(client, headers, [{"event_id": event_id, "type": "product_view", "visitor_id": visitor, "item_id": item,
                            **({"customer_id": customer_id} if customer_id else {})} for event_id, item in pairs])


@OPT_IN
def test_opt_in_profiles_a_visitor_only_once_they_granted_consent(client: TestClient, redis_url: str) -> None:
    views(client, None, "v1", ("a1", "22086"), ("a2", "21232"))
    post(client, None, [{"event_id": "a3", "type": "add_to_cart", "visitor_id": "v1", "item_id": "85123A"}])

    # accepted and logged, but nothing profiled: not even a key
    assert client.get("/v1/profiles/v1", headers=ADMIN).status_code == 404
    assert not redis.Redis.from_url(redis_url).exists(keys.visitor("v1"))
    assert_anonymous(client, "v1")
    assert {e["event_id"] for e in read_raw(client.app.state.engine.settings.log_dir)} == {"a1", "a2", "a3"}

    consent(client, "g1", "v1", True)
    views(client, None, "v1", ("a4", "22423"))

    assert [i for i, _ in reco(client, "recent", visitor_id="v1")] == ["22423"]
    assert personal(reco(client, "home", visitor_id="v1"))
    seen = profile(client, "v1")["visitor"]
    assert seen["consent"] is True and seen["session"]["items"] == ["22423"] and seen["cart"] == {}
    assert trained_on(client) == [("v1", "22423")]


@OPT_IN
def test_opt_in_a_customers_grant_covers_their_devices_from_then_on(client: TestClient) -> None:
    shopper = next(u for u in client.app.state.engine.models.current.user_index if u.startswith("c:"))[2:]
    login = {"type": "login", "customer_id": shopper, "properties": {"first_name": "Alice"}}
    post(client, ADMIN, [{"event_id": "l1", "visitor_id": "laptop", **login}])
    views(client, ADMIN, "laptop", ("l2", "22086"), customer_id=shopper)
    # in the model and logged in, but no grant yet: no model row, no name, no history
    assert_anonymous(client, "laptop")
    home = reco(client, "home", ADMIN, visitor_id="laptop", customer_id=shopper)
    assert home and not personal(home)

    post(client, ADMIN, [{"event_id": "g1", "type": "consent", "visitor_id": "laptop", "customer_id": shopper,
                          "properties": {"granted": True}}])
    post(client, ADMIN, [{"event_id": "l3", "visitor_id": "laptop", **login}])
    views(client, None, "laptop", ("l4", "22423"))
    assert greeting(client, "laptop") == "Hello Alice"
    assert [i for i, _ in reco(client, "recent", visitor_id="laptop")] == ["22423"]

    post(client, ADMIN, [{"event_id": "p1", "visitor_id": "phone", **login}])  # the customer granted
    views(client, None, "phone", ("p2", "84991"))
    assert profile(client, "phone")["visitor"]["session"]["items"] == ["84991"]
    assert [i for i, _ in reco(client, "recent", visitor_id="phone")] == ["84991", "22423"]
    assert trained_on(client) == [("laptop", "22423"), ("phone", "84991")]


def test_gpc_forgets_the_person_and_profiles_nothing(client: TestClient, customer: str, redis_url: str) -> None:
    assert personal(reco(client, "home", visitor_id="laptop"))  # before: profiled (opt-out by default)
    views(client, None, "other", ("o1", "22086"))

    views(client, GPC, "laptop", ("l4", "22423"))

    seen = profile(client, "laptop")
    assert seen["visitor"]["consent"] is False and seen["visitor"]["session"]["items"] == []
    assert seen["customer"]["consent"] is False and seen["customer"]["purchases"] == {}
    assert_anonymous(client, "laptop")
    assert_anonymous(client, "phone")  # the customer's other device too, as a withdrawal does
    # the log records the choice, so replay, Kafka workers and training see the same thing
    logged = {e["event_id"]: e.get("gpc", False) for e in read_raw(client.app.state.engine.settings.log_dir)}
    assert logged["l4"] is True and logged["o1"] is False
    assert trained_on(client) == [("other", "22086")]
    assert profile(client, "other")["visitor"]["session"]["items"] == ["22086"]  # others are unaffected


def test_a_gpc_request_never_grants_consent(client: TestClient) -> None:
    views(client, None, "v1", ("a1", "22086"))
    post(client, GPC, [{"event_id": "g1", "type": "consent", "visitor_id": "v1", "properties": {"granted": True},
                        "gpc": False}])
    views(client, {"Sec-GPC": "0"}, "v1", ("a2", "22423"))  # not an opt-out, but no grant either

    seen = profile(client, "v1")["visitor"]
    assert seen["consent"] is False and seen["session"]["items"] == []
    assert_anonymous(client, "v1")
    assert trained_on(client) == []

    consent(client, "g2", "v1", True)  # without GPC, the person's own grant still counts
    views(client, None, "v1", ("a3", "21232"))
    assert [i for i, _ in reco(client, "recent", visitor_id="v1")] == ["21232"]
    assert trained_on(client) == [("v1", "21232")]
