"""What the rate limits cost per request, over HTTP: ``python -m load_tests.bench_limits``.

Two `vitrine serve` processes on one Redis, one with the rate limits on (limits set so high that
none is reached: every request is counted, none refused) and one with them off. The same site
route is driven on both in alternating rounds, so that the machine's drift hits both alike; the
report is the on/off ratio of p50, p99 and throughput, at 1 and at 32 connections. A model is not
needed: the limit is checked before the route does any work, so an empty list is the sharpest
view of what the check adds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from engine.store.server import free_port, start_redis
from engine.threads import limit_blas_threads
from load_tests import reports
from load_tests.bench import ADMIN_KEY, UNREACHED_LIMITS, log_tail, start_server
from load_tests.httpload import Http, LoadResult, run_load

ROUNDS = 4


def _wait_answering(port: int, proc: Any, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_tail(log)}")
        try:
            if Http(port).request("GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not answering in time:\n{log_tail(log)}")


async def _measure(ports: dict[str, int], connections: int, seconds: float) -> dict[str, LoadResult]:
    def path(n: int) -> str:
        return f"/v1/recommendations?placement=home&visitor_id=bench-{n % 1000}"

    rounds: dict[str, list[LoadResult]] = {name: [] for name in ports}
    for round_ in range(ROUNDS):
        for name, port in ports.items():
            rounds[name].append(await run_load(name, "127.0.0.1", port, path, connections=connections,
                                               seconds=seconds / ROUNDS, warmup_s=0.5 if round_ == 0 else 0.1))
    return {name: LoadResult.combined(loads) for name, loads in rounds.items()}


def run(seconds: float) -> dict[str, Any]:
    report: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "seconds": seconds, "runs": []}
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-limits-") as tmp_name:
        tmp = Path(tmp_name)
        redis = start_redis(tmp / "redis", persist=False)
        procs = []
        try:
            ports = {}
            for name, on in (("limits on", "true"), ("limits off", "false")):
                port, log = free_port(), tmp / f"{name.replace(' ', '-')}.log"
                env = {**os.environ, "VITRINE_REDIS_URL": redis.local_url, "VITRINE_DATA_DIR": str(tmp / "data"),
                       "VITRINE_ADMIN_KEY": ADMIN_KEY, "VITRINE_RATE_LIMITS": on, **UNREACHED_LIMITS}
                procs.append(start_server(port, 1, env, log))
                _wait_answering(port, procs[-1], log)
                ports[name] = port
            for connections in (1, 32):
                results = uvloop.run(_measure(ports, connections, seconds))
                on, off = results["limits on"], results["limits off"]
                bad = [r.name for r in results.values() if r.errors or set(r.statuses) - {200}]
                if bad:
                    raise RuntimeError(f"requests failed or were refused: {', '.join(bad)}")
                report["runs"].append({
                    "connections": connections,
                    "results": [r.summary() for r in results.values()],
                    "p50_ratio": round(on.percentile(50) / off.percentile(50), 3),
                    "p99_ratio": round(on.percentile(99) / off.percentile(99), 3),
                    "rps_ratio": round(on.rps / off.rps, 3) if off.rps else 0.0,
                })
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            redis.stop()
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = ["| connections | p50 on/off | p99 on/off | req/s on/off |", "|---|---|---|---|"]
    lines += [f"| {r['connections']} | {r['p50_ratio']} | {r['p99_ratio']} | {r['rps_ratio']} |" for r in report["runs"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per server and connection count")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    args = parser.parse_args(argv)
    limit_blas_threads()
    report = run(args.seconds)
    reports.save(reports.stem(args.out, "limits"), report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
