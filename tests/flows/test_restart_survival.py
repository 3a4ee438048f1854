"""`vitrine serve` and `vitrine demo`, stopped every way a process stops (Ctrl-C, SIGTERM, SIGKILL
of the API, SIGKILL of its redis-server) and started again, find what they had: the catalogue,
profiles, dedup memory, exposure and experiment counters. Real processes, real Redis."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from engine.store.keys import log_applied
from tests.api.cli.test_serve_and_demo import start, wait_healthy
from tests.engine.store.test_server import servers_on, wait_written

RULES = ("experiments:\n  home-test:\n    placement: home\n    variants:\n"
         "      - {name: a, weight: 1}\n      - {name: b, weight: 1}\n")
ITEMS = [{"item_id": "A", "title": "Mug", "category": "home.kitchen", "price": 3.5},
         {"item_id": "B", "title": "Lamp", "category": "home.lighting", "price": 12}]


def events() -> list[dict[str, Any]]:
    """A visitor who browses, buys as a customer, and one who is shown and clicks an experiment's strip."""
    shown = {"block_id": "reco:home", "recommendation_id": "r1.home-test.a"}
    return [
        {"event_id": "e1", "type": "product_view", "visitor_id": "v1", "item_id": "A"},
        {"event_id": "e2", "type": "add_to_cart", "visitor_id": "v1", "item_id": "B"},
        {"event_id": "e3", "type": "purchase", "visitor_id": "v1", "customer_id": "c1",
         "items": [{"item_id": "B", "quantity": 1, "price": 12}]},
        {"event_id": "e4", "type": "block_impression", "visitor_id": "v2",
         "items": [{"item_id": "A"}, {"item_id": "B"}], "properties": shown},
        {"event_id": "e5", "type": "recommendation_click", "visitor_id": "v2", "item_id": "A",
         "properties": shown},
    ]


def redis_state(data_dir: Path) -> dict[bytes, Any]:
    """Every key of the data dir's running redis-server with its value and whether it has a TTL,
    but the for-you lists (a cache, written after the events are applied and computed again) and
    the log checkpoint (it gains a field for each new log segment; ``checkpoint`` reads it)."""
    port = json.loads((data_dir / "redis" / "redis.json").read_text())["port"]
    read = {b"string": "get", b"hash": "hgetall", b"zset": lambda c, k: c.zrange(k, 0, -1, withscores=True)}
    with redis.Redis(host="127.0.0.1", port=port) as client:
        state = {}
        for key in client.scan_iter(count=1000):
            if key.startswith(b"f:") or key == log_applied().encode():
                continue
            how = read[client.type(key)]
            value = how(client, key) if callable(how) else getattr(client, how)(key)
            state[key] = (value, client.ttl(key) > 0)
    return state


def checkpoint(data_dir: Path) -> dict[bytes, bytes]:
    port = json.loads((data_dir / "redis" / "redis.json").read_text())["port"]
    with redis.Redis(host="127.0.0.1", port=port) as client:
        return client.hgetall(log_applied())


def post(port: int, admin_key: str, body: object) -> dict[str, Any]:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/events", json=body, headers={"X-API-Key": admin_key}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def stop(how: str, proc: subprocess.Popen[str], data_dir: Path) -> None:
    if how == "kill-redis":  # a crash of Redis, then the API is stopped
        wait_written(json.loads((data_dir / "redis" / "redis.json").read_text())["port"])
        [server] = servers_on(data_dir / "redis")
        server.kill()
        while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:  # its parent reaps it later
            time.sleep(0.05)
        how = "sigint"
    proc.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "kill-api": signal.SIGKILL}[how])
    proc.wait(timeout=60)


# Both commands keep their Redis the same way (api.cli.common.redis_for): serve is stopped every way in
# turn; a later run of the demo with the newcomer's Ctrl-C and with the crash only the AOF survives.
@pytest.mark.parametrize(("command", "stops"), [("serve", ["sigint", "sigterm", "kill-api", "kill-redis"]),
                                                ("demo", ["sigint", "kill-redis"])], ids=["serve", "demo"])
def test_every_restart_finds_everything_there_was(command: str, stops: list[str], data_dir: Path) -> None:
    if command == "demo":  # a later run of the demo: imported and trained already (the model is a copy)
        (data_dir / "demo").mkdir()
        (data_dir / "demo" / ".imported").write_text("imported")
    (data_dir / "rules.yaml").write_text(RULES)
    port, proc = start([command], data_dir, rules_file=str(data_dir / "rules.yaml"))
    procs = [proc]
    try:
        wait_healthy(port, proc)
        admin_key = (data_dir / "admin_key").read_text().strip()
        r = httpx.put(f"http://127.0.0.1:{port}/v1/items", json={"items": ITEMS}, headers={"X-API-Key": admin_key})
        assert r.status_code == 200, r.text
        assert post(port, admin_key, {"events": events()})["profiles_updated"] is True
        before, applied = redis_state(data_dir), checkpoint(data_dir)
        families = {key.split(b":")[0] for key in before}
        assert {b"items", b"v", b"c", b"d", b"x", b"xp"} <= families, families

        for how in stops:
            stop(how, proc, data_dir)
            port, proc = start([command], data_dir, rules_file=str(data_dir / "rules.yaml"))
            procs.append(proc)
            wait_healthy(port, proc)
            assert redis_state(data_dir) == before, how
            assert checkpoint(data_dir).items() >= applied.items(), how
            ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
            assert ready["checks"]["catalogue_items"] == str(len(ITEMS)), (how, ready)
            # The dedup memory came back too: replayed event ids count nothing again.
            post(port, admin_key, {"events": events()})
            assert redis_state(data_dir) == before, how
    finally:
        for running in procs:
            if running.poll() is None:
                running.send_signal(signal.SIGINT)
                running.wait(timeout=60)
        for leftover in servers_on(data_dir / "redis"):
            leftover.kill()
