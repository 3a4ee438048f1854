"""What the rate limits cost per request, in process: ``python -m load_tests.bench_limits``.

Prints, per hit: api.ratelimit's counter, and the `limits` package's own fixed-window strategy
over its in-memory storage (why api.ratelimit counts by itself; the timer thread's CPU is the
process's CPU beyond the main thread's); then the site routes' check (``require_site``: key,
address, limit) with the rate limits on and off, and the difference: what a recommendation pays.
CPU time of the main thread per call, best of five runs (the machines here are shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from fastapi import FastAPI
from starlette.requests import Request

from api.auth import require_site
from api.ratelimit import Rate, RateLimits
from engine.settings import Settings

HIGH = "1000000000/second;1000000000/minute"  # two windows, never reached: every hit is counted


def _per_call_us(call: Callable[[int], object], n: int) -> tuple[float, float]:
    """(main thread CPU µs per call, process CPU µs per call), best of five."""
    best = (float("inf"), float("inf"))
    for _ in range(5):
        thread, process = time.thread_time(), time.process_time()
        for i in range(n):
            call(i)
        thread, process = time.thread_time() - thread, time.process_time() - process
        best = min(best, (thread / n * 1e6, process / n * 1e6))
    return best


def _ids(count: int) -> list[str]:
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)]


def counters(n: int) -> None:
    from limits import parse_many  # noqa: PLC0415
    from limits.storage import MemoryStorage  # noqa: PLC0415
    from limits.strategies import FixedWindowRateLimiter  # noqa: PLC0415

    print(f"per hit, two windows ({HIGH}), {n} hits, best of 5 (µs of CPU)")
    print("| counter | ids | main thread | whole process |")
    print("|---|---|---|---|")
    for count in (1, 10_000):
        ids = _ids(count)
        rate = Rate(HIGH)
        own = _per_call_us(lambda i: rate.hit(ids[i % count]), n)
        items = parse_many(HIGH)
        limiter = FixedWindowRateLimiter(MemoryStorage())

        def library_hit(i: int) -> None:  # its cheapest use: hit each window (no test first)
            ident = ids[i % count]
            for item in items:
                limiter.hit(item, ident)

        library = _per_call_us(library_hit, max(n // 10, 1000))
        print(f"| api.ratelimit.Rate | {count} | {own[0]:.2f} | {own[1]:.2f} |")
        print(f"| limits FixedWindowRateLimiter + MemoryStorage | {count} | {library[0]:.2f} | {library[1]:.2f} |")


def site_check(n: int) -> None:
    print(f"\nrequire_site (no key: an anonymous browser), {n} calls, five rounds alternating on and off, "
          "best of each (µs of CPU, main thread)")
    checks = {}
    for label, on in (("rate limits on", True), ("rate limits off", False)):
        app = FastAPI()
        app.state.settings = Settings(rate_limits=on, rate_limit_address=HIGH, admin_key="x" * 16)
        app.state.rate_limits = RateLimits(app.state.settings)
        scopes = [{"type": "http", "app": app, "headers": [(b"host", b"shop"), (b"accept", b"*/*")],
                   "method": "GET", "path": "/", "query_string": b"", "client": (address, 5000)}
                  for address in _ids(1000)]

        def check(i: int, scopes: list[dict[str, object]] = scopes) -> None:
            coroutine = require_site(Request(scopes[i % 1000]))
            try:
                coroutine.send(None)
            except StopIteration:
                pass

        checks[label] = check
    best = dict.fromkeys(checks, float("inf"))
    for _ in range(5):
        for label, check in checks.items():
            started = time.thread_time()
            for i in range(n):
                check(i)
            best[label] = min(best[label], (time.thread_time() - started) / n * 1e6)
    for label, value in best.items():
        print(f"| {label} | {value:.2f} |")
    print(f"| the limit's cost per request | {best['rate limits on'] - best['rate limits off']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="calls per measurement")
    args = parser.parse_args(argv)
    counters(args.n)
    site_check(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
