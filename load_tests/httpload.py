"""A closed-loop HTTP/1.1 load generator for the benchmarks: N keep-alive connections, each
sending its next request when the previous answer is in, for a fixed time.

Why not Locust here: its per-request overhead in Python (~1 ms with 20 users on these machines)
would measure the client, not the server. This does the minimum on uvloop, so the ratio between
two endpoints measured with it is the server's. Locust scenarios for realistic traffic live next
to it in load_tests/. ``Http`` is the benchmarks' plain client (standard library only, so the
benchmarks run after a plain ``pip install -e .``).
"""

from __future__ import annotations

import asyncio
import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson


class Http:
    """One keep-alive connection to 127.0.0.1: what a site's backend would hold."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self._headers = headers or {}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {**self._headers, **({"content-type": "application/json"} if body is not None else {})}
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except Exception:
            self._conn.close()  # else http.client refuses every later request on this connection
            raise

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """(status, the JSON answer)."""
        status, raw = self.request(method, path, body)
        return status, orjson.loads(raw)

    def ready(self) -> bool:
        """The server answers ``/ready`` with 200 (False while it is starting)."""
        try:
            return self.request("GET", "/ready")[0] == 200
        except (OSError, http.client.HTTPException):
            return False


@dataclass
class LoadResult:
    name: str
    connections: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # This process's CPU time over wall time during the load: near 1.0, the load generator (one
    # core) and not the server set the pace, and a throughput read from it is the client's.
    client_cpu: float = 0.0
    # The server's CPU seconds over the whole load, warm-up included, and the requests answered in
    # it (``server_cpu_us``): what a request costs the server, which a shared machine's load moves
    # far less than the throughput it allows. Set by callers that know the server's process.
    server_cpu_s: float = 0.0
    answered: int = 0
    # Commands the Redis servers executed over the load (INFO commandstats, summed over nodes),
    # when the caller counts them: per request answered, what a request costs Redis.
    redis_commands: int | None = None
    # Answers marked ``degraded`` (Redis slow, failing or behind an open breaker: the model alone),
    # among those recorded: they measure a cheaper path than the one asked for.
    degraded: int = 0

    @classmethod
    def combined(cls, loads: list[LoadResult]) -> LoadResult:
        """Loads of one endpoint at one concurrency, taken in rounds, as one."""
        first, seconds = loads[0], sum(load.seconds for load in loads)
        statuses: dict[int, int] = {}
        for load in loads:
            for status, count in load.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        return cls(name=first.name, connections=first.connections, seconds=seconds,
                   latencies_ms=[ms for load in loads for ms in load.latencies_ms],
                   errors=sum(load.errors for load in loads), statuses=statuses,
                   client_cpu=sum(load.client_cpu * load.seconds for load in loads) / seconds,
                   server_cpu_s=sum(load.server_cpu_s for load in loads), answered=sum(load.answered for load in loads),
                   redis_commands=None if any(load.redis_commands is None for load in loads)
                   else sum(load.redis_commands or 0 for load in loads),
                   degraded=sum(load.degraded for load in loads))

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_us(self) -> float | None:
        """The server's CPU per request answered, in µs (None when it was not measured)."""
        return 1e6 * self.server_cpu_s / self.answered if self.server_cpu_s and self.answered else None

    @property
    def redis_commands_per_request(self) -> float | None:
        """Redis commands per request answered (None when they were not counted)."""
        return self.redis_commands / self.answered if self.redis_commands is not None and self.answered else None

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "connections": self.connections,
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p90_ms": round(self.percentile(90), 3),
            "p99_ms": round(self.percentile(99), 3),
            "errors": self.errors,
            "non_200": sum(n for s, n in self.statuses.items() if s != 200),
            "degraded": self.degraded,
            "client_cpu": round(self.client_cpu, 2),
            **({"server_cpu_us": round(self.server_cpu_us)} if self.server_cpu_us is not None else {}),
            **({"redis_commands_per_request": round(self.redis_commands_per_request, 3)}
               if self.redis_commands_per_request is not None else {}),
        }


DEGRADED = b'"degraded":true'


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length) if length else b""


async def _connection(host: str, port: int, next_path: Callable[[int], str], deadline: float,
                      warmup_until: float, result: LoadResult, seq: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    n = seq
    try:
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            path = next_path(n)
            n += result.connections
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            started = time.perf_counter()
            try:
                status, body = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                return
            elapsed = time.perf_counter() - started
            result.answered += 1
            if started >= warmup_until:
                result.latencies_ms.append(elapsed * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if DEGRADED in body:
                    result.degraded += 1
    finally:
        writer.close()


async def run_load(name: str, host: str, port: int, next_path: Callable[[int], str], *, connections: int,
                   seconds: float, warmup_s: float = 0.5) -> LoadResult:
    """Drive ``connections`` keep-alive connections for ``warmup_s + seconds``; only requests
    started after the warm-up are recorded."""
    result = LoadResult(name=name, connections=connections, seconds=seconds)
    start, cpu_start = time.perf_counter(), time.process_time()
    warmup_until = start + warmup_s
    deadline = warmup_until + seconds
    await asyncio.gather(*(_connection(host, port, next_path, deadline, warmup_until, result, i)
                           for i in range(connections)))
    result.client_cpu = (time.process_time() - cpu_start) / max(time.perf_counter() - start, 1e-9)
    return result
