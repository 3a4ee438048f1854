"""The recommendation request path's Redis reads: one pipelined connection per process, without
redis-py in the way.

Why: the latency budget. redis-py's asyncio ``Redis.mget`` spends several times the CPU of the
parsing itself in its connection pool, retry wrapper, ``wait_for`` and stream reader, where an
``asyncio.Protocol`` that feeds ``hiredis.Reader`` on one pipelined connection does little more
than parse; per read, that difference was a large share of a recommendation's overhead
(``python -m load_tests.bench_reads`` compares them; numbers in load_tests/README.md). Merging the
reads of one loop turn into one redis-py MGET saved CPU under load but added a loop turn and a
task per batch.

How: each ``mget`` queues a future and sends its command. Redis answers a connection's commands
in order, so each parsed reply resolves the oldest future, and concurrent requests share the
socket without waiting for each other (pipelining). A loop turn's first command is written at
once, so a lone request waits for nothing; the rest of that turn's commands leave together in one
write at the start of the next turn. Under load that keeps what the merging reader bought, one
syscall for many reads, without its extra turn and task.

Where to connect: whatever the redis-py client ``engine.store.connect.connect`` built for the same URL
would use. Its pool parsed the URL (``redis://``, ``rediss://``, ``unix://``: address, TLS,
credentials, db, timeouts); for ``redis+sentinel://`` it asks the sentinels for the primary, and
is asked again on each reconnect. So a URL means the same thing to both.

Failures are ``RedisError``s, which ``Recommender.read`` turns into a degraded answer:
- a caller's own timeout (a ``deadline``, or a cancellation) ends only its wait: its reply is
  still read, then dropped, so later replies still meet their own futures. One watchdog timer per
  connection enforces every deadline, not a timer per call (arming and cancelling one is CPU
  spent on every read). It is armed for the earliest deadline of the reads waiting, and when it wakes
  it moves the reads still waiting into a heap by deadline. Nearly every read is answered long
  before the watchdog wakes and never enters the heap. (Pushing every read, with frequent wakes to
  pop the answered ones, put a wake's whole cost on an unlucky read: it tripled the p99 of a lone
  caller's reads.) It wakes at most every
  ``DEADLINE_GRANULARITY_S``, so a caller may hear of its deadline up to that much late, and a
  Redis that stops answering costs a heap push and pop per waiting read, not a scan of all of
  them on every wake;
- a lost connection fails every waiting call with ``ConnectionError``; the next call reconnects,
  and if that fails, calls fail at once for ``RECONNECT_AFTER_S`` before the next attempt;
- a server that accepts but never answers: once the oldest unanswered command is older than the
  client's socket timeout, the connection is dropped (every waiting call fails with redis-py's
  ``TimeoutError``), so neither the queue nor a caller without a timeout waits forever.

Only the request path's reads go through here; writes and everything else stay on redis-py.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError, InvalidResponse, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.store.latency import LatencyHistogram


# After a failed connect, reads fail at once for this long instead of each trying again: against a
# host that drops packets, every request would otherwise spend its whole time budget connecting.
RECONNECT_AFTER_S = 0.5
# How often, at most, the watchdog wakes to fail the reads past their callers' deadlines.
DEADLINE_GRANULARITY_S = 0.002


class _Connection(asyncio.Protocol):
    """One socket: commands go out in order, replies are matched to them in order."""

    def __init__(self, reply_timeout_s: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = hiredis.Reader(replyError=ResponseError, protocolError=InvalidResponse)
        # (sent at, sequence, deadline, future) of the calls not answered yet, in the order sent
        self._waiting: deque[tuple[float, int, float | None, asyncio.Future[Any]]] = deque()
        # (deadline, sequence, future) of the calls that were still waiting when the watchdog woke,
        # answered since or not (popped once due or answered)
        self._deadlines: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._sequence = itertools.count()
        self._heaped = -1  # the sequence of the last call the heap has seen
        self._reply_timeout_s = reply_timeout_s
        self._watchdog: asyncio.Handle | None = None  # armed while anything waits
        self._watchdog_due = 0.0  # when it is armed for (uvloop gives a due time in the past no TimerHandle)
        self._failure: tuple[type[RedisError], str] | None = None  # why we dropped the connection
        self._unsent: list[bytes] | None = None  # commands of this loop turn after its first
        self.latency: LatencyHistogram | None = None  # each reply's wait, when someone watches

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, *args: str | bytes | int, deadline: float | None = None) -> asyncio.Future[Any]:
        """The future of the command's reply; past ``deadline`` (loop time) it fails with redis-py's
        ``TimeoutError``."""
        assert self.transport is not None
        if self._unsent is None:
            self.transport.write(hiredis.pack_command(args))
            self._unsent = []
            self.loop.call_soon(self._flush)
        else:
            self._unsent.append(hiredis.pack_command(args))
        future = self.loop.create_future()
        sent_at = self.loop.time()
        self._waiting.append((sent_at, next(self._sequence), deadline, future))
        # Only this read can need the watchdog sooner than it is armed for: with every request's
        # budget the same, it almost never does, and the watchdog is not re-armed.
        due = self._due(sent_at, deadline)
        if due is not None and (self._watchdog is None or due < self._watchdog_due):
            self._arm(due)
        return future

    def _due(self, sent_at: float | None, deadline: float | None) -> float | None:
        """The earlier of a caller's ``deadline`` and the socket timeout of a read sent at ``sent_at``."""
        if sent_at is None or self._reply_timeout_s is None:
            return deadline
        overdue = sent_at + self._reply_timeout_s
        return overdue if deadline is None or overdue < deadline else deadline

    def _arm(self, due: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog, self._watchdog_due = self.loop.call_at(due, self._check_overdue), due

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, None
        if unsent and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(unsent))

    def abort(self, failure: type[RedisError], message: str) -> None:
        """Drop the connection now; every waiting call fails with ``failure(message)``."""
        if self._failure is None:
            self._failure = failure, message
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        latency = self.latency
        now = self.loop.time() if latency is not None else 0.0
        try:
            while (reply := self._parser.gets()) is not False:
                if not self._waiting:
                    raise InvalidResponse(f"a reply nobody asked for: {reply!r:.100}")
                sent_at, _, _, future = self._waiting.popleft()
                if latency is not None:
                    latency.observe(now - sent_at)
                if future.done():  # its caller gave up waiting
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except InvalidResponse as exc:
            self.abort(InvalidResponse, str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        failure, message = self._failure or (ConnectionError, f"Redis closed the connection ({exc or 'EOF'})")
        self._deadlines.clear()
        while self._waiting:
            future = self._waiting.popleft()[3]
            if not future.done():
                future.set_exception(failure(message))

    def _check_overdue(self) -> None:
        """Fail the reads past their callers' deadlines, drop a connection whose oldest read is
        past the socket timeout, and look again when the next of them is due."""
        self._watchdog = None
        now = self.loop.time()
        if self._reply_timeout_s is not None and self._waiting and now >= self._waiting[0][0] + self._reply_timeout_s:
            self.abort(RedisTimeoutError, f"Redis did not answer within {self._reply_timeout_s}s")
            return
        deadlines = self._deadlines
        for _, sequence, deadline, future in reversed(self._waiting):  # the newest, until one seen before
            if sequence <= self._heaped:
                break
            if deadline is not None:
                heapq.heappush(deadlines, (deadline, sequence, future))
        if self._waiting:
            self._heaped = self._waiting[-1][1]
        while deadlines and (deadlines[0][0] <= now or deadlines[0][2].done()):
            future = heapq.heappop(deadlines)[2]
            if not future.done():
                future.set_exception(RedisTimeoutError("Redis did not answer within the caller's time budget"))
        due = self._due(self._waiting[0][0] if self._waiting else None, deadlines[0][0] if deadlines else None)
        if due is not None:
            self._arm(max(due, now + DEADLINE_GRANULARITY_S))


class PipelinedReader:
    """``mget`` for the request path (an ``engine.profiles.store.KeyReader``), through one lazily
    opened connection per event loop, to where ``redis`` (from ``engine.store.connect.connect``) goes."""

    def __init__(self, redis: Redis, latency: LatencyHistogram | None = None) -> None:
        """``latency``: observes how long each read waited for its reply."""
        self._pool = redis.connection_pool
        self._latency = latency
        # Never connected: it only holds what redis-py made of the URL and options.
        self._target = self._pool.make_connection()
        self._connection: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0  # loop time before which a failed connect is not tried again

    async def mget(self, keys: list[str], deadline: float | None = None) -> list[bytes | None]:
        """``deadline`` (event loop time): past it the call fails with a ``TimeoutError`` and its
        reply, when it comes, is dropped (cheaper than ``asyncio.timeout`` on every recommendation)."""
        if not keys:
            return []
        connection = self._connection
        if connection is None or not connection.usable or connection.loop is not asyncio.get_running_loop():
            if deadline is None:
                connection = await self._connected()
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await self._connected()
        return await connection.send("MGET", *keys, deadline=deadline)  # type: ignore[no-any-return]

    def sent(self, keys: list[str], deadline: float | None = None) -> asyncio.Future[Any] | None:
        """``mget``'s reply as a future, the command sent now, when the connection is open (so that
        several reads can be sent before any is awaited, without a task each); None when it must
        connect first: then ``mget``."""
        connection = self._connection
        if connection is None or not connection.usable or connection.loop is not asyncio.get_running_loop():
            return None
        return connection.send("MGET", *keys, deadline=deadline)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.loop is asyncio.get_running_loop():
            connection.abort(ConnectionError, "the reader was closed")

    async def _connected(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection and a lock belong to one loop
            self._loop, self._connection, self._lock, self._retry_at = loop, None, asyncio.Lock(), 0.0
        async with self._lock:  # one connect at a time; the others then use it
            connection = self._connection
            if connection is None or not connection.usable:
                if loop.time() < self._retry_at:
                    raise ConnectionError("Redis was unreachable a moment ago; not retrying yet")
                try:
                    connection = self._connection = await self._connect(loop)
                except BaseException:  # also the caller's budget running out mid-connect
                    self._retry_at = loop.time() + RECONNECT_AFTER_S
                    raise
            return connection

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """Socket, AUTH and SELECT within the connect timeout (the sentinels have their own)."""
        target = self._target
        host, port = getattr(target, "host", None), getattr(target, "port", None)
        if isinstance(self._pool, SentinelConnectionPool):
            host, port = await self._pool.get_master_address()
        where = target.path if isinstance(target, UnixDomainSocketConnection) else f"{host}:{port}"
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(target.socket_connect_timeout):
                factory = lambda: _Connection(target.socket_timeout)  # noqa: E731
                if isinstance(target, UnixDomainSocketConnection):
                    _, connection = await loop.create_unix_connection(factory, target.path)
                else:
                    tls = target.ssl_context.get() if isinstance(target, SSLConnection) else None
                    _, connection = await loop.create_connection(factory, host, port, ssl=tls)
                if target.password:
                    user = (target.username,) if target.username else ()
                    await connection.send("AUTH", *user, target.password)
                if target.db:
                    await connection.send("SELECT", target.db)
            connection.latency = self._latency
            return connection
        except BaseException as exc:
            if connection is not None:
                connection.abort(ConnectionError, "connecting failed")
            if isinstance(exc, OSError):  # refused, unreachable, or our connect timeout
                raise ConnectionError(f"Error connecting to Redis at {where}: {exc!r}") from exc
            raise
