"""`vitrine bench`: the serving numbers, measured in one run on this machine.

It starts everything it needs on 127.0.0.1 in a temporary directory (a redis-server, a model
trained on the demo shop, `vitrine serve`), fills Redis with visitor profiles built from real
baskets, then measures the recommendation endpoint next to a no-op endpoint of the same app
(`GET /health`): single connection (p50/p99) and under concurrency (throughput, p99). Ratios
between the two are the numbers to read: the machines are noisy, ratios from one run are not.
It also reports freshness (an event accepted -> visible in the next recommendation response) and
Redis bytes per visitor profile (MEMORY USAGE). With ``cluster``, the same run also starts a Redis
Cluster (three primaries, three replicas), loads the same shop into it, and measures a server on
it next to one on the single Redis, with the Redis commands per request on each. Writes JSON +
markdown reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import uvloop
import redis

from engine.store import keys
from engine.events.schema import Event
from engine.events.history import interactions
from engine.catalog import upsert_items
from engine.ingest.importer import ImportReport, read_events, read_items
from engine.store.cluster_server import Cluster, start_cluster
from engine.store.connect import connect_to
from engine.store.server import free_port, start_redis
from engine.runtime import Engine
from engine.settings import Settings
from engine.training import train_config
from load_tests.bench_stream import measure_freshness
from load_tests.httpload import Http, LoadResult, run_load
from load_tests.reports import process_cpu_s
from load_tests.sessions import sessions_from_baskets
from models.datasets import write_online_retail
from models.train import train_from_rows


ROUNDS = 4  # alternating loads per endpoint and connection count, pooled
ADMIN_KEY = "bench-admin-key-not-a-secret"
# The load comes from one address, far faster than any visitor: the rate limits stay on, so that
# what they cost is measured, with the default's two windows, but are never reached.
UNREACHED_LIMITS = {"VITRINE_RATE_LIMIT_ADDRESS": "1000000000/second;1000000000/minute",
                    "VITRINE_RATE_LIMIT_VISITOR_EVENTS": "1000000000/minute"}
CLIENT_BOUND = 0.9  # load generator CPU share above which its throughput is the client's
ON = {"single": "one Redis", "cluster": "a Redis Cluster (3 primaries + 3 replicas)"}


@dataclass
class BenchConfig:
    seconds: float = 5.0
    connections: int = 32
    workers: tuple[int, ...] = (1, 2)
    visitors: int = 2000
    new_items: bool = False  # some items left out of training, so that they are new to the model (exploring)
    freshness_samples: int = 300
    out_dir: Path = Path("reports")
    seed: int = 7
    cluster: bool = False  # also measure on a Redis Cluster, in the same run


async def populate(settings: Settings, redis_url: str, sessions: list[list[tuple[str, str]]],
                    prefix: str = "bench") -> tuple[list[str], float]:
    """The visitors' events applied as a server applies them (with the model loaded, so lists are
    stored unless ``settings.store_lists`` is off); their ids, and events applied per second."""
    engine = Engine(settings, redis_url)
    await engine.refresh(first=True)
    now = time.time() - 600
    visitor_ids = []
    batches: list[list[Event]] = [[]]
    for n, session in enumerate(sessions):
        vid = f"{prefix}-{n:06d}"
        visitor_ids.append(vid)
        for k, (etype, item) in enumerate(session):
            batches[-1].append(Event(event_id=f"{prefix}{n}-{k}", type=etype, visitor_id=vid, item_id=item,  # type: ignore[arg-type]
                                     ts=now + k * 20, rt=now + k * 20))
        if len(batches[-1]) > 2000:
            batches.append([])
    started = time.perf_counter()
    for batch in batches:
        await engine.applier.apply(batch)
    await engine.precomputer.flush()
    rate = sum(map(len, batches)) / (time.perf_counter() - started)
    await engine.stop()
    return visitor_ids, rate


async def _memory(redis_url: str, visitor_ids: list[str]) -> dict[str, Any]:
    client = connect_to(redis_url, cluster=False)
    sample = visitor_ids[:500]
    async with client.pipeline(transaction=False) as pipe:
        for vid in sample:
            pipe.memory_usage(keys.visitor(vid), samples=0)
            pipe.strlen(keys.visitor(vid))
        replies = await pipe.execute()
    dedup_keys = [k async for k in client.scan_iter(match="d:*", count=1000)]
    dedup_bytes = 0
    for key in dedup_keys[:500]:
        dedup_bytes += await client.memory_usage(key, samples=0) or 0
    list_bytes = [await client.memory_usage(keys.for_you(vid), samples=0) or 0 for vid in sample]
    info = await client.info("server")
    await client.aclose()
    usage = np.array(replies[0::2], dtype=float)
    json_len = np.array(replies[1::2], dtype=float)
    return {
        "redis_version": info.get("redis_version"),
        "profiles_sampled": len(sample),
        "bytes_per_profile_mean": round(float(usage.mean()), 1),
        "bytes_per_profile_p50": float(np.percentile(usage, 50)),
        "bytes_per_profile_p90": float(np.percentile(usage, 90)),
        "bytes_per_profile_max": float(usage.max()),
        "json_bytes_mean": round(float(json_len.mean()), 1),
        "dedup_bytes_per_visitor_mean": round(dedup_bytes / max(1, min(len(dedup_keys), 500)), 1),
        "for_you_list_bytes_mean": round(float(np.mean(list_bytes)), 1),
    }


def start_server(port: int, workers: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Its log goes to a file: a pipe nobody reads would stop the server once it fills."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers",
                                 str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=out)


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_tail(log)}")
        if Http(port).ready():
            return
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def wait_personal(port: int, visitor_id: str, timeout: float = 30) -> None:
    """Until ``home`` answers from Redis (not ``degraded``): a server's first reads (a cluster
    client's slot map, a breaker opened by a slow first read) must not fall into a measured load."""
    client, deadline = Http(port), time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, answer = client.call("GET", f"/v1/recommendations?placement=home&visitor_id={visitor_id}")
        if status == 200 and not answer.get("degraded"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"recommendations still degraded (or failing) after {timeout}s")


class CommandCounter:
    """Commands executed so far by a set of Redis servers (``INFO commandstats`` summed over them),
    read on connections opened once, so that only the counter's own INFO calls are left out."""

    def __init__(self, urls: list[str]) -> None:
        self.clients = [redis.Redis.from_url(url, socket_timeout=10) for url in urls]

    def __call__(self) -> int:
        total = 0
        for client in self.clients:
            stats = client.info("commandstats")
            total += sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        return total

    def close(self) -> None:
        for client in self.clients:
            client.close()


async def _measure(port: int, visitor_ids: list[str], config: BenchConfig, pid: int,
                   commands: Callable[[], int] | None = None) -> list[LoadResult]:
    items = visitor_ids

    def noop(_: int) -> str:
        return "/health"

    def home(n: int) -> str:
        return f"/v1/recommendations?placement=home&visitor_id={items[n % len(items)]}"

    results = []
    # Interleaved in rounds, so that drift in the machine's load hits both endpoints alike: with
    # one load each, a busy spell of a few seconds on this shared VM moved the p99 ratio by ±0.2.
    for connections in (1, config.connections):
        rounds: dict[str, list[LoadResult]] = {"noop": [], "recommendations:home": []}
        for round_ in range(ROUNDS):
            for name, path in (("noop", noop), ("recommendations:home", home)):
                cpu, calls = process_cpu_s(pid), commands() if commands else 0
                load = await run_load(name, "127.0.0.1", port, path, connections=connections,
                                      seconds=config.seconds / ROUNDS, warmup_s=0.5 if round_ == 0 else 0.1)
                load.server_cpu_s = process_cpu_s(pid) - cpu
                if commands:
                    load.redis_commands = commands() - calls
                rounds[name].append(load)
        results += [LoadResult.combined(loads) for loads in rounds.values()]
    return results


def _ratios(results: list[LoadResult]) -> dict[str, float]:
    by = {(r.name, r.connections): r for r in results}
    out = {}
    for connections in sorted({r.connections for r in results}):
        noop, reco = by[("noop", connections)], by[("recommendations:home", connections)]
        out[f"p99_ratio_c{connections}"] = round(reco.percentile(99) / noop.percentile(99), 2)
        out[f"p50_ratio_c{connections}"] = round(reco.percentile(50) / noop.percentile(50), 2)
        out[f"rps_ratio_c{connections}"] = round(reco.rps / noop.rps, 2) if noop.rps else 0.0
        if reco.server_cpu_us is not None and noop.server_cpu_us is not None:
            out[f"server_cpu_ratio_c{connections}"] = round(reco.server_cpu_us / noop.server_cpu_us, 2)
    return out


def cluster_vs_single(cluster: list[dict[str, Any]], single: list[dict[str, Any]]) -> dict[str, float]:
    """Each figure of the cluster's run over the same figure of the single Redis's (result
    summaries of the same endpoints and connection counts)."""
    by = {(r["name"], r["connections"]): r for r in single}
    out = {}
    for r in cluster:
        other = by[(r["name"], r["connections"])]
        name = "home" if r["name"] == "recommendations:home" else r["name"]
        for field, short in (("p50_ms", "p50"), ("p99_ms", "p99"), ("rps", "rps"), ("server_cpu_us", "server_cpu"),
                             ("redis_commands_per_request", "redis_commands")):
            if short == "redis_commands" and name == "noop":
                continue  # a no-op reads nothing: its count is the background polls' share
            if r.get(field) and other.get(field):
                out[f"{name}_{short}_c{r['connections']}"] = round(r[field] / other[field], 2)
    return out


def run(config: BenchConfig) -> dict[str, Any]:
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "config": {"seconds": config.seconds, "connections": config.connections, "workers": list(config.workers),
                   "visitors": config.visitors,
                   "new_items": config.new_items, "cluster": config.cluster},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = start_redis(tmp / "redis", persist=False)
        # As `vitrine serve` connects to the Redis it manages; beside a cluster, over TCP as the
        # cluster is reached, so that cluster / single compares the topology alone.
        url = server.url if config.cluster else server.local_url
        report["config"]["redis"] = "unix socket" if url.startswith("unix:") else "tcp 127.0.0.1"
        cluster: Cluster | None = None
        counters: list[CommandCounter] = []
        try:
            settings = Settings(data_dir=tmp / "data", redis_url=url, admin_key=ADMIN_KEY)
            print("preparing: demo shop, model, profiles...", flush=True)
            items_csv, events_csv = write_online_retail(tmp / "demo")
            started = time.perf_counter()
            held_out = held_out_items(items_csv) if config.new_items else set()
            rows = interactions((e.model_dump() for e in read_events(events_csv, ImportReport(), accepted_at=time.time())),
                                catalogue=AllBut(held_out))
            # Trained as `vitrine train` trains: the served blend, not ALS alone, is what costs.
            artifact = train_from_rows(rows, train_config(settings), settings.models_dir)
            report["model"] = {"version": artifact.version, **artifact.meta["data"],
                               "train_seconds": round(time.perf_counter() - started, 1)}
            item_ids = asyncio.run(load_items(url, items_csv))
            report["model"]["new_items"] = len(held_out)
            sessions = sessions_from_baskets(events_csv, config.visitors, config.seed)
            visitor_ids, with_lists = asyncio.run(populate(settings, url, sessions))
            # The same events for other visitors without storing lists: what the lists cost to apply.
            _, without_lists = asyncio.run(populate(settings.model_copy(update={"store_lists": False}), url,
                                                     sessions, prefix="plain"))
            report["apply"] = {"events": sum(map(len, sessions)), "events_per_s_storing_lists": round(with_lists),
                               "events_per_s_without_lists": round(without_lists)}
            report["memory"] = asyncio.run(_memory(url, visitor_ids))
            env = {**os.environ, "VITRINE_REDIS_URL": url, "VITRINE_DATA_DIR": str(settings.data_dir),
                   "VITRINE_ADMIN_KEY": ADMIN_KEY, **UNREACHED_LIMITS}
            counters.append(CommandCounter([url]))
            targets = [("single", env, counters[0])]
            if config.cluster:
                print("starting a Redis Cluster and loading the same shop into it...", flush=True)
                cluster = start_cluster(tmp / "cluster")
                cluster_env, cluster_rate = prepare_cluster(cluster, settings, items_csv, sessions, tmp / "data-cluster")
                report["apply"]["cluster_events_per_s_storing_lists"] = round(cluster_rate)
                counters.append(CommandCounter([f"redis://127.0.0.1:{s.port}/0" for s in cluster.servers]))
                targets.append(("cluster", {**env, **cluster_env}, counters[1]))
            for workers in config.workers:
                for redis_name, target_env, counter in targets:
                    port, log = free_port(), tmp / f"server-{redis_name}-{workers}.log"
                    proc = start_server(port, workers, target_env, log)
                    try:
                        wait_ready(port, proc, log)
                        wait_personal(port, visitor_ids[0])
                        print(f"measuring with {workers} worker(s) on {ON[redis_name]}...", flush=True)
                        results = uvloop.run(_measure(port, visitor_ids, config, proc.pid, counter))
                        failed = [r.name for r in results if r.errors or set(r.statuses) - {200}]
                        if failed:  # what failed fast measures nothing
                            raise RuntimeError(f"requests failed ({', '.join(failed)}); server log:\n{log_tail(log)}")
                        freshness = measure_freshness(Http(port), item_ids, config.freshness_samples)
                    finally:
                        proc.terminate()
                        proc.wait(timeout=30)
                    # Why answers were degraded, as the server logged it (a timeout, a connection error).
                    warnings = [line for line in log.read_text(errors="replace").splitlines()
                                if "redis unavailable" in line]
                    report["runs"].append({"workers": workers, "redis": redis_name,
                                           "results": [r.summary() for r in results],
                                           "ratios": _ratios(results), "freshness_ms": freshness,
                                           "degraded_warnings": warnings[:10]})
            if config.cluster:
                runs = {(r["redis"], r["workers"]): r["results"] for r in report["runs"]}
                report["cluster_vs_single"] = {
                    str(workers): cluster_vs_single(runs[("cluster", workers)], runs[("single", workers)])
                    for workers in config.workers}
        finally:
            for counter in counters:
                counter.close()
            if cluster is not None:
                cluster.stop()
            server.stop()
    return report


def prepare_cluster(cluster: Cluster, settings: Settings, items_csv: Path, sessions: list[list[tuple[str, str]]],
                    data_dir: Path) -> tuple[dict[str, str], float]:
    """The single Redis's shop on ``cluster``: the same catalogue, the same visitors' events applied
    (through the cluster's applier), the same model in a data dir of its own (the servers' event
    logs stay apart). The environment of a server on it, and the events applied per second."""
    cluster_settings = Settings(data_dir=data_dir, redis_url=cluster.url, admin_key=settings.admin_key,
                                redis_cluster=True)
    shutil.copytree(settings.models_dir, cluster_settings.models_dir)
    asyncio.run(load_items(cluster.url, items_csv, cluster=True))
    _, rate = asyncio.run(populate(cluster_settings, cluster.url, sessions))
    return {"VITRINE_REDIS_URL": cluster.url, "VITRINE_REDIS_CLUSTER": "true", "VITRINE_DATA_DIR": str(data_dir)}, rate


class AllBut:
    """Every item id but ``held_out`` (``interactions``' catalogue filter)."""

    def __init__(self, held_out: set[str]) -> None:
        self.held_out = held_out

    def __contains__(self, item_id: object) -> bool:
        return item_id not in self.held_out


def held_out_items(items_csv: Path, every: int = 50) -> set[str]:
    """Every ``every``-th item of the catalogue: left out of training, they are new to the model
    once the catalogue is loaded after it, and for-you lists explore them."""
    return {item.item_id for n, item in enumerate(read_items(items_csv, ImportReport())) if n % every == 0}


async def load_items(redis_url: str, items_csv: Path, *, cluster: bool = False) -> list[str]:
    """The in-stock items of ``items_csv`` into the catalogue (of a Redis Cluster when ``cluster``).
    Loaded after training: what the model lacks is new to it."""
    items = [i for i in read_items(items_csv, ImportReport()) if i.in_stock]
    client = connect_to(redis_url, cluster=cluster)
    await upsert_items(client, items)  # type: ignore[arg-type]
    await client.aclose()
    return [i.item_id for i in items]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Vitrine serving benchmark ({report['started_at']})", "",
             f"Machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}. "
             f"Model: {report['model']['items']} items, {report['model']['users']} people"
             f"{', ' + str(report['model']['new_items']) + ' catalogue items left out of training (exploring)' if report['model'].get('new_items') else ''}. "
             f"Each load: {report['config']['seconds']} s in {ROUNDS} rounds alternating with the other "
             f"endpoint's, after a warm-up (0.5 s, then 0.1 s). "
             f"Redis over {report['config']['redis']}.", ""]
    for run_ in report["runs"]:
        on = f", {ON[run_['redis']]}" if "redis" in run_ else ""
        lines += [f"## {run_['workers']} uvicorn worker(s){on}", "",
                  "| endpoint | connections | req/s | p50 ms | p90 ms | p99 ms | errors | load generator CPU "
                  "| server CPU µs/request | Redis commands/request | degraded |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in run_["results"]:
            lines.append(f"| {r['name']} | {r['connections']} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} | "
                         f"{r['p99_ms']} | {r['errors'] + r['non_200']} | {r.get('client_cpu', '')} | "
                         f"{r.get('server_cpu_us', '')} | {r.get('redis_commands_per_request', '')} | {r.get('degraded', '')} |")
        lines += ["", "Ratios (recommendations / no-op): " +
                  ", ".join(f"{k} = {v}" for k, v in run_["ratios"].items()), ""]
        degraded = [r for r in run_["results"] if r.get("degraded")]
        if degraded:
            lines += ["Answers marked degraded (Redis slow or failing, or its breaker open: the model alone, a "
                      "cheaper path): " + ", ".join(f"{r['degraded']} of {r['name']} at {r['connections']} "
                                                   "connections" for r in degraded) + ". The server logged: " +
                      ("; ".join(f"`{w[-160:]}`" for w in run_.get("degraded_warnings", [])) or "nothing"), ""]
        bound = [r for r in run_["results"] if r.get("client_cpu", 0) >= CLIENT_BOUND]
        if bound:
            lines += ["Load generator near a full core (client-bound, the server had room left): " +
                      ", ".join(f"{r['name']} at {r['connections']} connections" for r in bound) +
                      ". Throughput ratios involving these understate the server's no-op rate.", ""]
        f = run_["freshness_ms"]
        lines += [f"Freshness (event accepted -> visible in the next recommendation response, {f['samples']} "
                  f"new visitors): p50 {f['p50']} ms, p90 {f['p90']} ms, p99 {f['p99']} ms; the event POST itself "
                  f"p50 {f['accept_p50']} ms, p99 {f['accept_p99']} ms.", ""]
    if report.get("cluster_vs_single"):
        lines += ["## Redis Cluster / one Redis", "",
                  "Each figure of the run on the cluster over the same figure on the single Redis, same "
                  "workers (Redis commands per request count every node's `INFO commandstats`, replicas "
                  "included, and the servers' background polls):", ""]
        for workers, ratios in report["cluster_vs_single"].items():
            lines += [f"- {workers} worker(s): " + ", ".join(f"{k} = {v}" for k, v in ratios.items())]
        lines += [""]
    a = report["apply"]
    cluster_apply = (f" On the Redis Cluster (each write waits for a replica): {a['cluster_events_per_s_storing_lists']} "
                     "events/s storing the lists." if "cluster_events_per_s_storing_lists" in a else "")
    lines += ["## Applying events", "",
              f"{a['events']} events of real baskets applied in process (batches of 2,000), as a server applies "
              f"them: {a['events_per_s_storing_lists']} events/s storing the visitors' for-you lists, "
              f"{a['events_per_s_without_lists']} without (`VITRINE_STORE_LISTS=false`).{cluster_apply}", ""]
    m = report["memory"]
    lines += ["## Redis memory per visitor profile", "",
              f"Redis {m['redis_version']}, {m['profiles_sampled']} profiles of real baskets (up to 12 views "
              f"+ 1 cart add): MEMORY USAGE mean {m['bytes_per_profile_mean']} B, p50 {m['bytes_per_profile_p50']}, "
              f"p90 {m['bytes_per_profile_p90']}, max {m['bytes_per_profile_max']} (stored payload mean "
              f"{m['json_bytes_mean']} B). Event-id dedup buckets add {m['dedup_bytes_per_visitor_mean']} B per "
              "active visitor for the dedup window, and the for-you list stored when events are applied "
              f"{m['for_you_list_bytes_mean']} B per visitor with a visit under way (it expires with the "
              "visit).", ""]
    return "\n".join(lines)


def write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace(":", "").replace("-", "")
    json_path = out_dir / f"bench-{stamp}.json"
    md_path = out_dir / f"bench-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2))
    md_path.write_text(markdown(report))
    return json_path, md_path
