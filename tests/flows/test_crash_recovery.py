"""Crash recovery as a user meets it, with real processes: Redis paused (SIGSTOP), events
acknowledged from the log, the API killed with SIGKILL, Redis resumed, `vitrine serve` started
again: every acknowledged event is in the profiles, with nobody running `vitrine replay`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import redis

from engine.store import keys
from engine.profiles.shapes import VisitorProfile
from engine.store.server import free_port, start_redis
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE


def serve(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*VITRINE, "serve", *extra], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{env['VITRINE_PORT']}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)


def test_events_acknowledged_while_redis_was_paused_survive_a_kill_9(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", persist=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(VITRINE_DATA_DIR=str(tmp_path / "data"), VITRINE_REDIS_URL=server.url,
               VITRINE_PORT=str(free_port()), VITRINE_ADMIN_KEY="crash-recovery-admin-key")
    base = f"http://127.0.0.1:{env['VITRINE_PORT']}"
    visitors = [f"crash-v{i}" for i in range(30)]
    api = serve(env, tmp_path / "serve.log")
    try:
        r = httpx.post(f"{base}/v1/events", json={"event_id": "before", "type": "add_to_cart",
                                                  "visitor_id": "crash-v0", "item_id": "A"}, timeout=10)
        assert r.status_code == 200 and r.json()["profiles_updated"] is True
        server.process.send_signal(signal.SIGSTOP)
        try:
            for i, visitor in enumerate(visitors):
                r = httpx.post(f"{base}/v1/events", timeout=10, json={
                    "event_id": f"crash-{i}", "type": "add_to_cart", "visitor_id": visitor, "item_id": "A"})
                assert r.status_code == 200 and r.json()["profiles_updated"] is False, r.text
            stop(api, signal.SIGKILL)
        finally:
            server.process.send_signal(signal.SIGCONT)
        # Two workers: one catches up (under the log dir's lock), the other finds nothing left.
        api = serve(env, tmp_path / "serve.log", "--workers", "2")
        with redis.Redis.from_url(server.url) as client:
            carts = {v: VisitorProfile.decode(client.get(keys.visitor(v))).cart.get("A", 0) for v in visitors}
        assert carts == {v: 2 if v == "crash-v0" else 1 for v in visitors}
        caught_up = "caught up the event log: 30 events read past the checkpoint"
        assert (tmp_path / "serve.log").read_text().count(caught_up) == 1
    finally:
        stop(api, signal.SIGINT)
        server.process.send_signal(signal.SIGCONT)
        server.stop()
