"""The `vitrine` command as a user runs it: import, train, serve (with its own Redis), Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from engine.store import keys
from engine.store.server import free_port, socket_path
from tests.conftest import without_settings
from tests.processes import command_line
from tests.redis_clients import is_cluster_url, redis_environment, sync_client
from models import artifacts

VITRINE = [sys.executable, "-m", "api.cli"]
ROOT = Path(__file__).resolve().parents[3]


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(VITRINE + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start(args: list[str], data_dir: Path, **settings: str) -> tuple[int, subprocess.Popen[str]]:
    """A long-running vitrine command as a newcomer starts it: no VITRINE_ settings but the data
    dir, a free port (so it starts its own Redis) and ``settings`` (``rules_file="..."``)."""
    port = free_port()
    env = without_settings()
    env.update({"VITRINE_DATA_DIR": str(data_dir), "VITRINE_PORT": str(port)})
    env.update({f"VITRINE_{name.upper()}": value for name, value in settings.items()})
    proc = subprocess.Popen(VITRINE + args, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return port, proc


def wait_healthy(port: int, proc: subprocess.Popen[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()  # else reading its output below would wait for ever
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"vitrine exited ({proc.returncode}) or was not healthy within {timeout_s}s: "
                                 f"{output[-3000:]}")
        time.sleep(0.2)


def test_import_reports_bad_rows_loads_good_ones_and_is_idempotent(tmp_path: Path, redis_url: str) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,category,brand,price,in_stock\n"
                     "A,Mug,home.kitchen,acme,3.5,true\n"
                     "B,Lamp,home.lighting,,12,no\n"
                     "bad id,Broken,x,,1,true\n"
                     "C,Pen,office,,abc,true\n"
                     "D,Cup,home.kitchen,,2,maybe\n")
    events = tmp_path / "events.csv"
    events.write_text("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
                      "2024-01-01T10:00:00Z,v1,,product_view,A,,\n"
                      "2024-01-01T10:01:00Z,v1,c1,purchase,A,2,3.5\n"
                      "2024-01-01T10:01:00Z,v1,c1,purchase,B,1,12\n"
                      "yesterday,v1,,product_view,A,,\n"
                      "2024-01-01T10:02:00Z,v1,,teleport,A,,\n"
                      "2024-01-01T10:03:00Z,v2,,product_view,B,,\n")
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path / "data"), **redis_environment(redis_url)}
    result = run(["import", "--items", str(items), "--events", str(events)], env)
    assert result.returncode == 0, result.stderr
    assert "2/5 items loaded, 3 rejected" in result.stdout
    assert "line 4: item_id" in result.stdout and "line 5: price" in result.stdout and "line 6: in_stock" in result.stdout
    assert "4/6 event lines loaded, 2 rejected" in result.stdout
    assert "line 5: timestamp" in result.stdout and "line 6: event_type" in result.stdout
    client = sync_client(redis_url)
    assert sorted(client.hkeys(keys.catalogue_keys(is_cluster_url(redis_url)).items)) == [b"A", b"B"]
    first = client.get("c:{c1}")
    assert first is not None
    again = run(["import", "--events", str(events)], env)
    assert again.returncode == 0, again.stderr
    assert client.get("c:{c1}") == first  # importing the same file twice changes nothing
    client.close()

    trained = run(["train"], env)
    assert trained.returncode == 0, trained.stderr
    assert "1 orders" in trained.stdout
    assert artifacts.current_version(tmp_path / "data" / "models") is not None


def test_import_and_train_say_what_is_wrong(tmp_path: Path, redis_url: str) -> None:
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path), **redis_environment(redis_url)}
    assert run(["import"], env).returncode == 2
    missing = run(["import", "--items", str(tmp_path / "nope.csv")], env)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    empty = run(["train"], env)
    assert empty.returncode == 1 and "no interactions" in empty.stderr
    bad = run(["train"], {**env, "VITRINE_EVENT_WEIGHTS": '{"teleport": 1}'})
    assert bad.returncode == 2 and "teleport" in bad.stderr


def test_serve_starts_its_own_redis_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port, proc = start(["serve"], tmp_path)
    try:
        wait_healthy(port, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("redis-server" in command_line(c) for c in children)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
        assert ready["checks"]["redis"] == "ok" and ready["checks"]["model"].startswith("none")
        key = (tmp_path / "admin_key").read_text().strip()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/admin/models", headers={"X-API-Key": key}).status_code == 200
        r = httpx.post(f"http://127.0.0.1:{port}/v1/events",
                       json={"event_id": "s1", "type": "product_view", "visitor_id": "v", "item_id": "A"})
        assert r.status_code == 200 and r.json()["profiles_updated"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / "redis" / "dump.rdb").exists()  # the embedded Redis kept its data


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed: the demo prints curl lines")
def test_demo_command_imports_trains_serves_and_its_curl_lines_work(tmp_path: Path) -> None:
    """The README's first command, minus the pip install: `vitrine demo` on an empty data dir."""
    port, proc = start(["demo"], tmp_path)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 600
        while not any("API docs" in line for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        curls = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert len(curls) == 5, lines
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        # Run the lines exactly as printed, the way a newcomer pastes them.
        outputs = [json.loads(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30,
                                             check=True).stdout) for curl in curls]
        home, posted, product, customer, profile = outputs
        assert home["items"] and product["items"] and customer["items"]
        assert posted["accepted"] and posted["profiles_updated"] is True
        assert all(i["reason"].startswith("similar_to:") for i in product["items"])
        # A known buyer's list is personal, each item naming the signal that ranked it (engine.ranking.reasons).
        reasons = [i["reason"] for i in customer["items"]]
        assert all(r.startswith(("because_you_", "similar_to:", "for_you", "buy_again", "viewed_before", "popular",
                                 "session_neighbours", "sequence")) for r in reasons), reasons
        assert any(r.startswith(("because_you_bought:", "similar_to:", "buy_again", "for_you")) for r in reasons), reasons
        assert profile["visitor"]["session"]["items"] == ["85123A"]
        items = httpx.get(f"http://127.0.0.1:{port}/ready").json()["checks"]["catalogue_items"]
        assert 'data-vitrine-placement="home"' in httpx.get(f"http://127.0.0.1:{port}/").text  # the demo shop
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode in (0, 130, -2)

    # What the first run imported, and the visitor's click, are still there after the Ctrl-C.
    port, proc = start(["serve"], tmp_path)
    try:
        wait_healthy(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/ready").json()["checks"]["catalogue_items"] == items != "0"
        key = (tmp_path / "admin_key").read_text().strip()
        profile = httpx.get(f"http://127.0.0.1:{port}/v1/profiles/demo-visitor-1", headers={"X-API-Key": key}).json()
        assert profile["visitor"]["session"]["items"] == ["85123A"]
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 404  # `serve` shows no demo shop
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_serve_with_a_tenants_file_serves_each_shop_and_commands_work_for_one(tmp_path: Path) -> None:
    """One `vitrine serve` for two shops on its own Redis (one shop in a database of its own);
    `VITRINE_TENANT` points a command at one shop: a replay with --reset there leaves the other as
    it was."""
    shops = {"shop-a": {"admin_key": "admin-key-of-shop-a-0123"},
             "shop-b": {"admin_key": "admin-key-of-shop-b-0123", "redis_db": 2}}
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(json.dumps({"tenants": shops}))  # JSON is YAML
    port, proc = start(["serve"], tmp_path, tenants_file=str(tenants_file))
    try:
        wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        for tenant in shops:
            sent = httpx.post(f"{base}/t/{tenant}/v1/events", json={
                "event_id": "s1", "type": "product_view", "visitor_id": "v", "item_id": f"item-{tenant}"})
            assert sent.status_code == 200 and sent.json()["profiles_updated"] is True
        assert httpx.get(f"{base}/t/shop-c/v1/recommendations?placement=home").status_code == 404
        socket = socket_path(tmp_path / "redis")
        assert socket is not None and socket.is_socket()
        db = {n: sync_client(f"unix://{socket}?db={n}") for n in (0, 2)}
        before_b = db[2].get("t.shop-b:v:{v}")
        assert before_b and b"item-shop-b" in before_b and b"item-shop-a" in (db[0].get("t.shop-a:v:{v}") or b"")
        env = {**without_settings(), "VITRINE_DATA_DIR": str(tmp_path), "VITRINE_TENANTS_FILE": str(tenants_file),
               "VITRINE_TENANT": "shop-a"}
        db[0].set("t.shop-a:v:{stray}", b"x")  # not from shop-a's log: a reset replay removes it
        db[0].set("t.shop-b:v:{stray}", b"x")  # nor shop-b's, in the same database: it stays
        replayed = run(["replay", "--reset"], env)
        assert replayed.returncode == 0, replayed.stderr
        assert db[0].get("t.shop-a:v:{stray}") is None and db[0].exists("t.shop-a:v:{v}")
        assert db[0].get("t.shop-b:v:{stray}") == b"x" and db[2].get("t.shop-b:v:{v}") == before_b
        unknown = run(["replay"], {**env, "VITRINE_TENANT": "shop-z"})
        assert unknown.returncode == 2 and "shop-z" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
