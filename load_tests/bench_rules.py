"""What merchandising rules cost on the request path, and what exposure state costs in Redis.

    python -m load_tests.bench_rules [--requests 2000] [--out var/bench_rules.json]

Builds the demo shop (a slice of UCI Online Retail II) in a temporary data dir with its own
redis-server, trains a model, serves the API with uvicorn in a subprocess, and times sequential
requests on one connection, interleaved: the no-op ``/health``, ``home``'s chain without rules,
``home`` under the README's complete example (filters, affinity boosts, buries, a campaign with
boosts, pin and promoted share, diversity, anti-repetition, an experiment and a control group),
and a ``/v1/blocks`` call. The product bar is rec p99 <= 2x the no-op p99.
Then it reports Redis ``MEMORY USAGE`` of exposure keys for typical visitors.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import redis

from engine.events.history import interactions_from_log
from engine.events.log import EventLog
from engine.ingest.checkpoint import Checkpoint
from engine.ingest.importer import import_events_to_log, import_items
from engine.runtime import Engine
from engine.settings import Settings
from engine.store.server import free_port, start_redis
from engine.threads import limit_blas_threads
from engine.training import gated_train
from load_tests.httpload import Http
from models.datasets import write_online_retail

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-not-a-secret"


def readme_rules() -> str:
    match = re.search(r"<!-- rules-example -->\s*```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if match is None:
        raise SystemExit("README.md has no rules example")
    return match.group(1)


def prepare(data_dir: Path, redis_url: str, event_lines: int) -> list[str]:
    """Demo items and the first ``event_lines`` purchase lines, imported and trained on."""
    items, events = write_online_retail(data_dir / "demo")
    subset = data_dir / "demo" / "events_subset.csv"
    with events.open() as src, subset.open("w") as dst:
        dst.writelines(itertools.islice(src, event_lines + 1))
    settings = Settings(data_dir=data_dir, redis_url=redis_url)
    asyncio.run(_import(settings, redis_url, items, subset))
    since = time.time() - settings.train_window_s
    gated_train(interactions_from_log(settings.log_dir, settings.consent_required, since), settings)
    client = redis.Redis.from_url(redis_url)
    visitors = sorted(k.decode()[3:-1] for k in client.scan_iter("v:{*}", count=1000))
    client.close()
    return visitors


async def _import(settings: Settings, redis_url: str, items: Path, events: Path) -> None:
    """As `vitrine import` does in embedded mode: items, then events through the log."""
    engine = Engine(settings, redis_url)
    event_log = EventLog(settings.log_dir, segment_bytes=settings.log_segment_bytes, fsync=settings.log_fsync)
    try:
        await import_items(engine.redis, items)
        await engine.catalogue.refresh()
        await import_events_to_log(events, event_log, engine.applier, Checkpoint(engine.redis), accepted_at=time.time())
    finally:
        event_log.close()
        await engine.redis.aclose()


def timed(http: Http, series: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Sequential requests, the series interleaved one request at a time so that the noise of a
    shared machine falls on all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in series}
    rounds = min(len(paths) for paths in series.values())
    for i in range(-min(200, rounds), rounds):  # negative rounds warm up
        for name, paths in series.items():
            started = time.perf_counter()
            status, body = http.request("GET", paths[i])
            elapsed = time.perf_counter() - started
            if status != 200:
                raise SystemExit(f"{paths[i]}: {status} {body[:200]!r}")
            if i >= 0:
                samples[name].append(elapsed)
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {"p50_ms": 1000 * statistics.median(values), "p99_ms": 1000 * values[int(0.99 * len(values)) - 1],
                     "requests": len(values)}
    return out


def exposure_memory(http: Http, redis_url: str, visitors: list[str]) -> dict[str, float]:
    """A typical visitor: one content block seen, three recommendation strips of 10 items on
    three pages (with the experiment's recommendation id), one click."""
    for v in visitors:
        body = http.call("GET", f"/v1/recommendations?placement=home&visitor_id={v}")[1]
        rid = body["recommendation_id"]
        items = [{"item_id": i["item_id"]} for i in body["items"]]
        events = [{"event_id": f"{v}-b", "type": "block_impression", "visitor_id": v,
                   "properties": {"block_id": "welcome-back"}}]
        events += [{"event_id": f"{v}-s{page}", "type": "block_impression", "visitor_id": v, "items": items,
                    "properties": {"block_id": "reco:home", "recommendation_id": rid}} for page in range(3)]
        events.append({"event_id": f"{v}-c", "type": "recommendation_click", "visitor_id": v,
                       "item_id": items[0]["item_id"], "properties": {"recommendation_id": rid}})
        status, answer = http.request("POST", "/v1/events", orjson.dumps({"events": events}))
        if status != 200:
            raise SystemExit(f"events: {status} {answer[:300]!r}")
    client = redis.Redis.from_url(redis_url)
    sizes = [client.memory_usage(f"x:{{{v}}}", samples=0) or 0 for v in visitors]
    profiles = [client.memory_usage(f"v:{{{v}}}", samples=0) or 0 for v in visitors]
    values = [client.strlen(f"x:{{{v}}}") for v in visitors]
    client.close()
    return {"visitors": len(visitors), "exposure_key_bytes_mean": statistics.mean(sizes),
            "exposure_value_bytes_mean": statistics.mean(values),
            "visitor_profile_key_bytes_mean": statistics.mean(profiles)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--events", type=int, default=30_000, help="purchase lines imported")
    parser.add_argument("--out", type=Path, default=Path("var/bench_rules.json"))
    args = parser.parse_args(argv)
    limit_blas_threads()
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as tmp:
        data_dir = Path(tmp)
        server = start_redis(data_dir / "redis", persist=False)
        api: subprocess.Popen[bytes] | None = None
        try:
            print("preparing the demo shop and model...", flush=True)
            visitors = prepare(data_dir, server.url, args.events)
            rules_file = data_dir / "rules.yaml"
            rules_file.write_text("placements: {}\n")  # replaced once the API is up
            port = free_port()
            env = {**os.environ, "VITRINE_REDIS_URL": server.url, "VITRINE_DATA_DIR": str(data_dir),
                   "VITRINE_ADMIN_KEY": ADMIN_KEY, "VITRINE_RULES_FILE": str(rules_file),
                   "VITRINE_RATE_LIMITS": "false"}  # it measures the rules, from one address
            api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory",
                                    "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                                    "--log-level", "warning"], env=env, cwd=ROOT)
            http = Http(port, headers={"X-API-Key": ADMIN_KEY})
            deadline = time.monotonic() + 60
            while not http.ready():
                if time.monotonic() > deadline:
                    raise SystemExit("the API did not become ready")
                time.sleep(0.2)
            n = args.requests
            people = [visitors[i % len(visitors)] for i in range(n)]
            # The README's rules, plus a placement with home's chain and no rules, served by
            # the same process in the same run.
            rules_file.write_text(readme_rules().replace(
                "placements:\n", "placements:\n  home_plain:\n    scenarios: [for_you, trending, popular]\n", 1))
            status, answer = http.request("POST", "/v1/admin/rules/reload")
            if status != 200:
                raise SystemExit(f"rules reload: {answer[:500]!r}")
            results = timed(http, {
                "noop_health": ["/health"] * n,
                "home_no_rules": [f"/v1/recommendations?placement=home_plain&visitor_id={v}" for v in people],
                "home_readme_rules": [f"/v1/recommendations?placement=home&visitor_id={v}" for v in people],
                "blocks_home_top": [f"/v1/blocks/home_top?visitor_id={v}" for v in people],
            })
            noop_p99 = results["noop_health"]["p99_ms"]
            ratios = {name: results[name]["p99_ms"] / noop_p99
                      for name in ("home_no_rules", "home_readme_rules", "blocks_home_top")}
            memory = exposure_memory(http, server.url, visitors[:200])
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=20)
            server.stop()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "latency": results,
              "p99_ratio_vs_noop": ratios, "memory": memory}
    print(f"{'endpoint':22} {'p50 ms':>8} {'p99 ms':>8} {'p99 / no-op':>12}")
    for name, r in results.items():
        ratio = ratios.get(name)
        print(f"{name:22} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {'' if ratio is None else f'{ratio:12.2f}'}")
    print(f"exposure key (x:{{visitor}}): {memory['exposure_key_bytes_mean']:.0f} bytes in Redis "
          f"({memory['exposure_value_bytes_mean']:.0f} of value); visitor profile key: "
          f"{memory['visitor_profile_key_bytes_mean']:.0f} bytes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
