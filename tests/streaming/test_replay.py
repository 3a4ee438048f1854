"""``vitrine replay`` rebuilds, into an emptied Redis, exactly the profiles live processing built:
from the embedded log, and from the Kafka topic (offset 0) after workers processed it live."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store import keys
from engine.profiles.tokens import customer_token
from engine.settings import Settings, as_environment
from engine.profiles.codec import decode_dict
from tests.streaming.conftest import wait_until
from tests.redis_clients import sync_client

ROOT = Path(__file__).parents[2]
SECRET = "replay-test-identity-secret"  # the logins carry customer tokens, as a shop's pages send them
ITEMS = ["85123A", "71053", "84406B", "22752", "21730"]


def shop_events() -> list[dict]:
    """Views, carts, a removal, logins (one customer per cookie) and orders for 12 visitors."""
    events = []
    for v in range(12):
        vid, n = f"v-{v}", 0

        def add(kind: str, **fields: object) -> None:
            nonlocal n
            events.append({"event_id": f"{vid}-{n}", "type": kind, "visitor_id": vid,
                           "timestamp": f"2026-11-20T10:{v:02d}:{n:02d}Z", **fields})
            n += 1

        for item in ITEMS[v % 3:]:
            add("product_view", item_id=item)
        add("search", properties={"query": f"mug {v}"})
        add("add_to_cart", item_id=ITEMS[v % 5], quantity=2)
        add("add_to_cart", item_id=ITEMS[(v + 1) % 5])
        add("remove_from_cart", item_id=ITEMS[(v + 1) % 5])
        if v % 2:
            add("login", customer_id=f"c-{v}", customer_token=customer_token(SECRET, f"c-{v}"),
                properties={"first_name": f"Ann{v}"})
        add("purchase", items=[{"item_id": ITEMS[v % 5], "quantity": 2, "price": 3.5}])
    return events


def snapshot(r: redis.Redis) -> dict:
    """Every profile, as stored, and the trending counters (floats summed in another order may
    differ in the last bits, hence the rounding)."""
    state = {key: r.get(key) for pattern in ("v:*", "c:*") for key in r.scan_iter(match=pattern)}
    for key in r.scan_iter(match="tr:*"):
        state[key] = [(m, round(s, 6)) for m, s in r.zrange(key, 0, -1, withscores=True)]
    return state


def replay(settings: Settings) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", "replay", "--reset"], env=as_environment(settings),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"identity_secret": SECRET}


def test_replay_from_the_embedded_log_rebuilds_identical_profiles(client: TestClient, redis_url: str) -> None:
    events = shop_events()
    for start in range(0, len(events), 25):
        assert client.post("/v1/events", json={"events": events[start:start + 25]}).status_code == 200
    r = sync_client(redis_url)
    live = snapshot(r)
    assert sum(k.startswith(b"c:") for k in live) == 6 and sum(k.startswith(b"v:") for k in live) == 12
    out = replay(client.app.state.settings)
    assert f"replayed {len(events)} events" in out and f"{len(events)} applied" in out
    assert snapshot(r) == live


def test_replay_from_the_topic_rebuilds_what_the_workers_built(kafka_settings: Settings, catalogue: None,
                                                               start_worker) -> None:
    events = shop_events()
    start_worker()
    r = sync_client(kafka_settings.redis_url)
    # The API checks the tokens and drops them before producing; the worker trusts the topic.
    with TestClient(create_app(kafka_settings.model_copy(update={"identity_secret": SECRET}))) as api:
        for start in range(0, len(events), 25):
            assert api.post("/v1/events", json={"events": events[start:start + 25]}).status_code == 200

    def ordered(v: int) -> bool:  # each visitor's last event is its order (on the customer once logged in)
        raw = r.get(keys.customer(f"c-{v}") if v % 2 else keys.visitor(f"v-{v}"))
        return bool(raw) and (decode_dict(raw) or {}).get("o") == 1

    wait_until(lambda: all(ordered(v) for v in range(12)), what="the worker to apply every event")
    live = snapshot(r)
    out = replay(kafka_settings)
    assert f"replayed {len(events)} events from topic" in out
    assert snapshot(r) == live
