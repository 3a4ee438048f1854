"""One data dir, one redis-server: `vitrine` commands run side by side (as real processes) share
the server the first one started, and the last one to finish stops it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import psutil
import redis

from engine.redis_server import start_redis
from tests.conftest import without_settings
from tests.test_cli import ROOT, VITRINE, start, wait_healthy


def servers_on(directory: Path) -> list[psutil.Process]:
    """redis-server processes keeping their data in ``directory`` (redis-server rewrites its
    command line, but it works in its data directory)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "redis-server" and proc.status() != psutil.STATUS_ZOMBIE \
                    and proc.cwd() == str(directory.resolve()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_import(items: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = without_settings()
    env["VITRINE_DATA_DIR"] = str(data_dir)
    return subprocess.run([*VITRINE, "import", "--items", str(items)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def items_in(redis_dir: Path) -> set[bytes]:
    port = json.loads((redis_dir / "redis.json").read_text())["port"]
    with redis.Redis(host="127.0.0.1", port=port) as client:
        return set(client.hkeys("items"))


def test_commands_of_one_data_dir_share_one_redis_server(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,category,brand,price,in_stock\nA,Mug,home.kitchen,acme,3.5,true\n")
    more = tmp_path / "more.csv"
    more.write_text("item_id,title,category,brand,price,in_stock\nB,Lamp,home.lighting,,12,true\n")
    first_port, first = start(["serve"], tmp_path)
    second = None
    try:
        wait_healthy(first_port, first)
        [server] = servers_on(redis_dir)
        # An import while serve runs goes to serve's Redis, not to a second server.
        imported = run_import(items, tmp_path)
        assert imported.returncode == 0, imported.stderr
        assert "using the running redis-server" in imported.stderr
        assert servers_on(redis_dir) == [server] and items_in(redis_dir) == {b"A"}

        # A second serve joins; the first one (which started the server) stops: the server stays
        # up for the second.
        second_port, second = start(["serve"], tmp_path)
        wait_healthy(second_port, second)
        assert servers_on(redis_dir) == [server]
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
        assert server.is_running() and server.status() != psutil.STATUS_ZOMBIE
        ready = httpx.get(f"http://127.0.0.1:{second_port}/ready").json()
        assert ready["checks"]["redis"] == "ok"
        r = httpx.post(f"http://127.0.0.1:{second_port}/v1/events",
                       json={"event_id": "m1", "type": "product_view", "visitor_id": "v", "item_id": "A"})
        assert r.status_code == 200 and r.json()["profiles_updated"] is True

        # The last user is killed outright: the server it leaves is found and used by the next
        # command, which, being the last user, stops it (saving the data).
        second.kill()
        second.wait(timeout=30)
        assert servers_on(redis_dir) == [server]
        imported = run_import(more, tmp_path)
        assert imported.returncode == 0, imported.stderr
        assert "using the running redis-server" in imported.stderr
        server.wait(timeout=30)
        assert servers_on(redis_dir) == [] and not (redis_dir / "redis.json").exists()

        # Everything reached the one server and was saved: a new server loads it all.
        from engine.redis_server import managed_redis

        with managed_redis(redis_dir) as url, redis.Redis.from_url(url) as client:
            assert set(client.hkeys("items")) == {b"A", b"B"}
            assert client.exists("v:{v}")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
        for leftover in servers_on(redis_dir):
            leftover.terminate()


def test_serve_stopped_by_sigterm_stops_the_redis_it_started(tmp_path: Path) -> None:
    """What a process manager or `docker stop` sends: serve shuts down, and so does its Redis
    (saving the data), as on Ctrl-C."""
    port, serve = start(["serve"], tmp_path)
    try:
        wait_healthy(port, serve)
        [server] = servers_on(tmp_path / "redis")
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        server.wait(timeout=30)
        assert servers_on(tmp_path / "redis") == [] and not (tmp_path / "redis" / "redis.json").exists()
        assert (tmp_path / "redis" / "dump.rdb").exists()
    finally:
        if serve.poll() is None:
            serve.kill()
        for leftover in servers_on(tmp_path / "redis"):
            leftover.terminate()


def test_processes_on_the_machine_reach_the_server_by_its_unix_socket(tmp_path: Path) -> None:
    """Cheaper round trips than loopback TCP; a data dir too deep for a socket path gets TCP."""
    short = Path(tempfile.mkdtemp(prefix="vr-"))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    servers = [start_redis(short / "redis", persist=False), start_redis(deep / "redis", persist=False)]
    try:
        near, far = (server.local_url for server in servers)
        assert near == f"unix://{short.resolve()}/redis/redis.sock?db=0" and far == servers[1].url
        for url in (near, far, servers[0].url):
            with redis.Redis.from_url(url) as client:
                assert client.ping()
        with redis.Redis.from_url(near) as client:  # the socket is the same server as the port
            client.set("k", b"v")
        with redis.Redis.from_url(servers[0].url) as client:
            assert client.get("k") == b"v"
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(short, ignore_errors=True)
