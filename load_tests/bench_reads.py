"""What a request-path Redis read costs the API process: redis-py's ``Redis.mget`` (configured as
``engine.store.connect.connect`` configures it) next to ``engine.store.reads.PipelinedReader``.

    python -m load_tests.bench_reads [--reads 5000] [--out var/bench_reads.json]

Starts its own redis-server on 127.0.0.1, stores 500 visitor-profile-sized values, then times
one-key MGETs in process: one caller at a time (wall and CPU per read), and 32 concurrent callers
(CPU per read and reads/s), under asyncio and under uvloop. CPU is this thread's CPU time, i.e.
what the event loop spends; read the ratios, the machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import uvloop

from engine.store import keys
from engine.store.reads import PipelinedReader
from engine.store.server import start_redis
from engine.store.connect import connect

VISITORS = [keys.visitor(f"bench-{n:06d}") for n in range(500)]
CONCURRENCY = 32


async def timed(read: Callable[[list[str]], Awaitable[list[bytes | None]]], reads: int, concurrency: int
                ) -> dict[str, float]:
    async def caller(first: int, count: int) -> None:
        for n in range(first, first + count):
            await read([VISITORS[n % len(VISITORS)]])

    await caller(0, 300)  # warm: connection open, code paths hot
    cpu, wall = time.thread_time(), time.perf_counter()
    share = reads // concurrency
    await asyncio.gather(*(caller(c * share, share) for c in range(concurrency)))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    done = share * concurrency
    return {"cpu_us": round(cpu / done * 1e6, 1), "wall_us": round(wall / done * 1e6, 1),
            "reads_per_s": round(done / wall)}


async def measure(url: str, reads: int) -> dict[str, dict[str, float]]:
    client = connect(url, timeout_s=5.0)
    reader = PipelinedReader(client)
    results = {}
    for concurrency in (1, CONCURRENCY):
        results[f"redis-py mget, {concurrency} caller(s)"] = await timed(client.mget, reads, concurrency)
        results[f"pipelined reader, {concurrency} caller(s)"] = await timed(reader.mget, reads, concurrency)
    await reader.aclose()
    await client.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("var/bench_reads.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp), persist=False)
        try:
            with redis.Redis.from_url(server.url) as setup:
                setup.mset({key: b"x" * 1000 for key in VISITORS})
            report = {"asyncio": asyncio.run(measure(server.url, args.reads)),
                      "uvloop": uvloop.run(measure(server.url, args.reads))}
        finally:
            server.stop()
    print(f"{'':42s} {'CPU µs/read':>12s} {'wall µs/read':>13s} {'reads/s':>9s}")
    for loop, rows in report.items():
        for name, row in rows.items():
            print(f"{loop + ': ' + name:42s} {row['cpu_us']:12.1f} {row['wall_us']:13.1f} {row['reads_per_s']:9.0f}")
        for concurrency in (1, CONCURRENCY):
            old, new = rows[f"redis-py mget, {concurrency} caller(s)"], rows[f"pipelined reader, {concurrency} caller(s)"]
            print(f"{loop}, {concurrency} caller(s): redis-py / pipelined CPU x{old['cpu_us'] / new['cpu_us']:.1f}, "
                  f"wall x{old['wall_us'] / new['wall_us']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
