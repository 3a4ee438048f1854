"""Recommendations while Redis is paused: how long a shop page waits when Redis stops answering.

    python -m load_tests.bench_paused [--seconds 5] [--connections 1 4] [--out reports]

Starts, on 127.0.0.1 in a temporary directory, a redis-server, a model trained on part of the
demo shop, visitor profiles built from real baskets and `vitrine serve` (one worker, a real
process). Then, per connection count, it loads ``GET /v1/recommendations?placement=home`` for
``--seconds`` while Redis answers, then as long again with the redis-server stopped by SIGSTOP
(every request from the moment of the pause is recorded, the first ones that wait out the read
budget included), then resumes Redis and times how long until answers are personal again (not
``degraded``). Prints the latencies and writes a JSON and a markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from engine.events.history import interactions
from engine.ingest.importer import ImportReport, read_events
from engine.store.server import free_port, start_redis
from engine.settings import Settings
from engine.threads import limit_blas_threads
from engine.training import train_config
from load_tests.bench import load_items, populate, start_server, wait_ready
from load_tests.httpload import Http, LoadResult, run_load
from load_tests.sessions import sessions_from_baskets
from models.datasets import write_online_retail
from models.train import train_from_rows

EVENT_LINES = 60_000  # of the demo's purchase lines, for the model: enough for real lists, quick to train
VISITORS = 500


def _subset(events_csv: Path, lines: int) -> Path:
    out = events_csv.with_name("events_subset.csv")
    with events_csv.open() as src, out.open("w") as dst:
        for number, line in enumerate(src):
            if number > lines:
                break
            dst.write(line)
    return out


def _summary(result: LoadResult) -> dict[str, Any]:
    summary = result.summary()
    summary["max_ms"] = round(max(result.latencies_ms), 3) if result.latencies_ms else None
    return summary


def _degraded(port: int, visitor_id: str) -> bool:
    """One request on a new connection (a kept one may have been closed by the server's keep-alive
    timeout during a load)."""
    status, body = Http(port).call("GET", f"/v1/recommendations?placement=home&visitor_id={visitor_id}")
    assert status == 200, body
    return bool(body.get("degraded"))


def _until_personal(port: int, visitor_id: str, timeout_s: float = 30.0) -> float:
    """Seconds until a recommendation is no longer degraded."""
    started = time.perf_counter()
    while _degraded(port, visitor_id):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"still degraded {timeout_s}s after Redis resumed")
        time.sleep(0.005)
    return time.perf_counter() - started


def run(seconds: float, connections: list[int]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-paused-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = start_redis(tmp / "redis", persist=False)
        url = redis_server.local_url  # as `vitrine serve` connects to the Redis it manages
        try:
            settings = Settings(data_dir=tmp / "data", redis_url=url, admin_key="bench-admin-key-not-a-secret")
            report["settings"] = {name: getattr(settings, name) for name in type(settings).model_fields
                                  if name.startswith("redis_") and name != "redis_url"}
            print("preparing: demo shop, model, profiles...", flush=True)
            items_csv, events_csv = write_online_retail(tmp / "demo")
            events = _subset(events_csv, EVENT_LINES)
            rows = interactions(e.model_dump() for e in read_events(events, ImportReport(), accepted_at=time.time()))
            train_from_rows(rows, train_config(settings), settings.models_dir)
            asyncio.run(load_items(url, items_csv))
            visitor_ids, _ = asyncio.run(populate(settings, url, sessions_from_baskets(events, VISITORS, 7)))
            env = {**os.environ, "VITRINE_REDIS_URL": url, "VITRINE_DATA_DIR": str(settings.data_dir),
                   "VITRINE_ADMIN_KEY": "bench-admin-key-not-a-secret", "VITRINE_RATE_LIMITS": "false"}
            port, log = free_port(), tmp / "server.log"
            server = start_server(port, 1, env, log)
            try:
                wait_ready(port, server, log)

                def home(n: int) -> str:
                    return f"/v1/recommendations?placement=home&visitor_id={visitor_ids[n % len(visitor_ids)]}"

                for count in connections:
                    print(f"{count} connection(s): Redis answering, then paused...", flush=True)
                    assert not _degraded(port, visitor_ids[0]), "degraded before the pause"
                    healthy = uvloop.run(run_load("healthy", "127.0.0.1", port, home, connections=count,
                                                  seconds=seconds))
                    os.kill(redis_server.process.pid, signal.SIGSTOP)
                    try:
                        paused = uvloop.run(run_load("paused", "127.0.0.1", port, home, connections=count,
                                                     seconds=seconds, warmup_s=0))
                        still_degraded = _degraded(port, visitor_ids[0])
                    finally:
                        os.kill(redis_server.process.pid, signal.SIGCONT)
                    recovery_s = _until_personal(port, visitor_ids[0])
                    report["runs"].append({"connections": count, "healthy": _summary(healthy),
                                           "paused": _summary(paused), "degraded_while_paused": still_degraded,
                                           "personal_again_after_s": round(recovery_s, 3)})
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
            redis_server.stop()
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Recommendations while Redis is paused ({report['started_at']})", "",
             f"Machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}. "
             f"Settings: {', '.join(f'{k}={v}' for k, v in report['settings'].items())}.", "",
             "| connections | Redis | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-200 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run_ in report["runs"]:
        for phase in ("healthy", "paused"):
            r = run_[phase]
            lines.append(f"| {run_['connections']} | {phase} | {r['requests']} | {r['rps']} | {r['p50_ms']} | "
                         f"{r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['errors'] + r['non_200']} |")
    lines += [""] + [f"{run_['connections']} connection(s): answers degraded while paused: "
                     f"{run_['degraded_while_paused']}; personal again {run_['personal_again_after_s']} s after "
                     "Redis resumed." for run_ in report["runs"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load (default 5)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4], help="connection counts to try")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where to write the reports")
    args = parser.parse_args(argv)
    limit_blas_threads()
    report = run(args.seconds, args.connections)
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace(":", "").replace("-", "")
    (args.out / f"bench-paused-{stamp}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"bench-paused-{stamp}.md").write_text(text)
    print(f"reports: {args.out}/bench-paused-{stamp}.json .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
