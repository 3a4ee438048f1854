"""A disk that refuses the event log: the events request answers 503 (nothing acknowledged, retry
with the same ids), the log is never left with a torn line, and once the disk takes writes again
the retried events go in once. Real refusals: a file size limit (RLIMIT_FSIZE, EFBIG after a
partial write) on a real `vitrine serve`, and a full tmpfs (ENOSPC) where mounting is allowed."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.events.log import segments
from engine.store.server import free_port
from tests.conftest import make_settings
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE, wait_healthy


def batch(n: int) -> dict:
    return {"events": [{"event_id": f"full-{n}-{i}", "type": "add_to_cart", "visitor_id": f"v-{n}",
                        "item_id": "A"} for i in range(5)]}


def logged(log_dir: Path) -> list[str]:
    """Every line's event id; fails on a torn or corrupt line anywhere."""
    ids = []
    for path in segments(log_dir):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path.name} ends with a torn line"
        ids += [orjson.loads(line)["event_id"] for line in data.splitlines()]
    return ids


def post_until_refused(post: object) -> tuple[list[int], dict]:
    """Batches until one is refused: the accepted batch numbers and the refusal."""
    accepted = []
    for n in range(50):
        r = post(batch(n))  # type: ignore[operator]
        if r.status_code == 503:
            return accepted, {"n": n, "body": r.json()}
        assert r.status_code == 200, r.text
        accepted.append(n)
    raise AssertionError("the disk never refused the log")


def assert_clear_503(refusal: dict) -> None:
    body = refusal["body"]
    assert "event log cannot be written" in body["error"] and "retry with the same event ids" in body["error"]
    assert body["errors"] == [{"field": "events", "message": "not stored"}]


def test_a_file_size_limit_is_a_503_and_never_a_torn_line(tmp_path: Path, redis_url: str) -> None:
    limit = 3000
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(VITRINE_DATA_DIR=str(tmp_path), VITRINE_REDIS_URL=redis_url, VITRINE_PORT=str(port),
               VITRINE_ADMIN_KEY="disk-full-test-admin-key")
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    proc = subprocess.Popen(VITRINE + ["serve"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard)))
    try:
        wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        accepted, refusal = post_until_refused(lambda body: httpx.post(f"{base}/v1/events", json=body, timeout=10))
        assert accepted and refusal["n"] == accepted[-1] + 1
        assert_clear_503(refusal)
        assert logged(tmp_path / "log") == [f"full-{n}-{i}" for n in accepted for i in range(5)]
        psutil.Process(proc.pid).rlimit(psutil.RLIMIT_FSIZE, (hard, hard))  # the disk has room again
        r = httpx.post(f"{base}/v1/events", json=batch(refusal["n"]), timeout=10)  # the client's retry
        assert r.status_code == 200 and r.json()["profiles_updated"] is True
        assert logged(tmp_path / "log") == [f"full-{n}-{i}" for n in [*accepted, refusal["n"]] for i in range(5)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root")
def test_a_full_disk_is_a_503_and_never_a_torn_line(tmp_path: Path, redis_url: str) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(log_dir)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        filler = log_dir / "filler"
        filler.write_bytes(b"x" * 24 * 1024)  # leaves two pages
        with TestClient(create_app(make_settings(tmp_path, redis_url))) as client:
            accepted, refusal = post_until_refused(lambda body: client.post("/v1/events", json=body))
            assert_clear_503(refusal)
            assert logged(log_dir) == [f"full-{n}-{i}" for n in accepted for i in range(5)]
            filler.unlink()
            r = client.post("/v1/events", json=batch(refusal["n"]))
            assert r.status_code == 200, r.text
            assert logged(log_dir) == [f"full-{n}-{i}" for n in [*accepted, refusal["n"]] for i in range(5)]
    finally:
        subprocess.run(["umount", str(log_dir)], check=True)
