"""Scale-out Redis through Sentinel: a ``redis+sentinel://`` URL reaches the primary a real
sentinel process names, the applier writes profiles through it and the request path's reader
reads them back from it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
import redis

from engine.store import keys
from engine.events.schema import Event
from engine.store.server import find_redis_server, free_port, start_redis
from engine.runtime import Engine
from engine.profiles.codec import decode_dict
from tests.conftest import make_settings


@pytest.mark.parametrize("secured", [False, True], ids=["open", "passwords"])
def test_profiles_are_written_through_sentinel(tmp_path: Path, secured: bool) -> None:
    """With ``secured``, the primary and the sentinel each require their own password: the URL
    carries the primary's (URL-escaped) and ``sentinel_password``."""
    primary = start_redis(tmp_path / "primary", persist=False)
    port = free_port()
    conf = tmp_path / "sentinel.conf"  # sentinel rewrites its config file: it must be writable
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor shop 127.0.0.1 {primary.port} 1\n"
                    + ("sentinel auth-pass shop p@ss:1\nrequirepass s3ntinel\n" if secured else ""))
    url = f"redis+sentinel://127.0.0.1:{port}/shop/0"
    if secured:
        redis.Redis.from_url(primary.url).config_set("requirepass", "p@ss:1")
        url = f"redis+sentinel://:p%40ss%3A1@127.0.0.1:{port}/shop/0?sentinel_password=s3ntinel"
    sentinel = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:

        async def run() -> None:
            deadline = time.monotonic() + 10
            engine = Engine(make_settings(tmp_path, url), url, serve_models=False)
            while True:
                try:
                    await engine.redis.ping()
                    break
                except (redis.exceptions.ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            now = time.time()
            stats = await engine.applier.apply([Event(event_id="e-1", type="product_view", visitor_id="v-1",
                                                      item_id="85123A", ts=now, rt=now)])
            assert stats.applied == 1
            stored, = await engine.reads.mget([keys.visitor("v-1")])
            assert decode_dict(stored)["si"] == ["85123A"]
            watcher = redis.Redis(port=port, password="s3ntinel" if secured else None)
            assert len(watcher.client_list()) > 1  # the engine's client of the sentinel, and this one
            await engine.stop()
            deadline = time.monotonic() + 5
            while len(watcher.client_list()) > 1:  # the engine left nothing connected
                assert time.monotonic() < deadline, watcher.client_list()
                await asyncio.sleep(0.05)
            watcher.close()

        asyncio.run(run())
        stored = redis.Redis(port=primary.port, password="p@ss:1" if secured else None).get(keys.visitor("v-1"))
        assert decode_dict(stored)["si"] == ["85123A"]
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)
        primary.stop()
