"""Erasing a person reaches the triggers' shared keys: after ``DELETE /v1/people/{id}`` no Redis key
names them or holds their ids (occurrences, the fire-once index, the report's sets, the delivery
and control-group streams, the webhook outbox and its dead letters), while another person's
entries stay."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_triggers import at
from tests.conftest import ADMIN
from tests.redis_clients import sync_client

RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload: {title: "Your cart"}
  cart-held:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 1
  welcome:
    kind: welcome
    after: 1m
    channel: email
    control: 0
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "rules.yaml").write_text(RULES)
    # Nothing listens at the webhook: one failed post dead-letters a document. The test runs the
    # triggers' work itself: the background poll waits an hour.
    return {"rules_file": tmp_path / "rules.yaml", "trigger_poll_s": 3600.0, "trigger_webhook_attempts": 1,
            "trigger_webhook_url": f"http://127.0.0.1:{closed_port()}/hook",
            "trigger_webhook_secret": "s" * 16, "trigger_webhook_timeout_s": 2.0}


def events(visitor: str, customer: str, armed: float) -> list[dict[str, Any]]:
    return [{"event_id": f"{visitor}-c", "type": "consent", "visitor_id": visitor, "timestamp": at(armed),
             "properties": {"purpose": "email", "granted": True}},
            {"event_id": f"{visitor}-a", "type": "add_to_cart", "visitor_id": visitor, "item_id": "85123A",
             "timestamp": at(armed)}]


def everything(redis: Any) -> bytes:
    """Every key's name and content, whatever its type, in one blob."""
    out = []
    for name in redis.scan_iter(count=1000):
        kind = redis.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        content: Any = {"string": redis.get, "hash": redis.hgetall, "set": redis.smembers, "list":
                        lambda k: redis.lrange(k, 0, -1), "zset": lambda k: redis.zrange(k, 0, -1),
                        "stream": lambda k: redis.xrange(k)}[kind](name)
        out.append(repr((name, content)).encode())
    return b"\n".join(out)


def test_an_erased_person_is_gone_from_every_trigger_key(client: TestClient, redis_url: str) -> None:
    runner = client.app.state.triggers
    armed = time.time() - 3700  # due 100 s ago
    for visitor, customer in (("gone-visitor", "gone-customer"), ("kept-visitor", "kept-customer")):
        assert client.post("/v1/events", json={"events": events(visitor, customer, armed)}).status_code == 200
    decided, posted = client.portal.call(runner.tick)  # a reminder and a held-out one each; the posts fail
    assert (decided, posted) == (4, 2)
    for visitor, customer in (("gone-visitor", "gone-customer"), ("kept-visitor", "kept-customer")):
        r = client.post("/v1/events", headers=ADMIN, json={"events": [
            {"event_id": f"{visitor}-p", "type": "purchase", "visitor_id": visitor, "item_id": "85123A",
             "price": 3.0},  # converts the reminder's arm
            {"event_id": f"{visitor}-l", "type": "login", "visitor_id": visitor, "customer_id": customer},
            {"event_id": f"{visitor}-b", "type": "add_to_cart", "visitor_id": visitor, "customer_id": customer,
             "item_id": "22423"}]})  # due in an hour: waits in the queue
        assert r.status_code == 200, r.text
    runner.clock = lambda: time.time() + 120  # the welcomes are due, the new carts' reminders are not
    assert client.portal.call(runner.run_due) == 2  # the welcomes: in the outbox, not posted yet
    redis = sync_client(redis_url)
    before = everything(redis)
    for name in (b"gone-visitor", b"gone-customer", b"kept-visitor", b"kept-customer"):
        assert before.count(name) > 5, name
    report = client.get("/v1/admin/triggers/cart-reminder", headers=ADMIN).json()["arms"]["sent"]
    assert (report["people"], report["conversions"]) == (2, 2)

    r = client.delete("/v1/people/gone-customer", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["trigger_entries_removed"] >= 8
    after = everything(redis)
    assert b"gone-visitor" not in after and b"gone-customer" not in after
    for name in (b"kept-visitor", b"kept-customer"):
        assert after.count(name) == before.count(name), name
    report = client.get("/v1/admin/triggers/cart-reminder", headers=ADMIN).json()["arms"]["sent"]
    assert (report["people"], report["conversions"], report["revenue"]) == (1, 1, 3.0)
    assert client.portal.call(runner.tick) == (0, 1)  # the kept person's welcome; nothing for the erased one
