"""Bursts from one client against a running Vitrine: how many requests its limits refuse.

    python -m load_tests.burst --port 8000 [--requests 2000] [--connections 16] [--pause 61]

Three bursts, each of ``--requests`` requests as fast as ``--connections`` keep-alive connections
go: single events of one visitor (a bot with one cookie), home recommendations, and admin
requests with a wrong key. Prints the statuses and the share of 429s. Targets 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable

import orjson

from load_tests.httpload import _read_response


async def burst(port: int, requests: int, connections: int, make: Callable[[int], bytes]) -> tuple[Counter[int], float]:
    statuses: Counter[int] = Counter()
    counter = iter(range(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in counter:
                writer.write(make(n))
                statuses[(await _read_response(reader))[0]] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return statuses, time.perf_counter() - started


def _event(n: int) -> bytes:
    body = orjson.dumps({"event_id": f"burst-{time.time_ns()}-{n}", "type": "page_view", "visitor_id": "burst-bot"})
    return (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def _recommendation(n: int) -> bytes:
    return b"GET /v1/recommendations?placement=home&visitor_id=burst-bot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _wrong_key(n: int) -> bytes:
    return b"GET /v1/admin/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: guess-%016d\r\n\r\n" % n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="a Vitrine on 127.0.0.1")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between bursts (61: each starts with the server's minute windows empty)")
    args = parser.parse_args(argv)
    print(f"| burst ({args.requests} requests, {args.connections} connections, one client) "
          "| statuses | 429 share | seconds |")
    print("|---|---|---|---|")
    for n, (name, make) in enumerate((("events (one visitor)", _event), ("recommendations", _recommendation),
                                      ("wrong admin keys", _wrong_key))):
        if n:
            time.sleep(args.pause)
        statuses, seconds = asyncio.run(burst(args.port, args.requests, args.connections, make))
        shown = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
        print(f"| {name} | {shown} | {statuses[429] / max(sum(statuses.values()), 1):.1%} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
