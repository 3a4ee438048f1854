"""The Locust scenarios in smoke mode against a live server, and the SLO gate logic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from load_tests.sessions import demo_journeys
from load_tests.slo import EndpointStats, Slo, breaches
from tests.flows.test_e2e_live import live  # noqa: F401 - the live-server fixture

ROOT = Path(__file__).resolve().parents[2]


def test_slo_gate_arithmetic() -> None:
    ok = EndpointStats("GET /a", requests=100, failures=1, p99_ms=40)
    slow = EndpointStats("GET /b", requests=100, failures=0, p99_ms=120)
    failing = EndpointStats("POST /c", requests=50, failures=2, p99_ms=10)
    assert breaches([ok], Slo(p99_ms=50, max_error_rate=0.01)) == []
    found = breaches([ok, slow, failing], Slo(p99_ms=50, max_error_rate=0.01))
    assert found == ["GET /b: p99 120 ms > 50 ms", "POST /c: error rate 4.00% > 1.00% (2/50)"]
    assert breaches([], Slo(min_requests=1)) == ["only 0 requests were made (at least 1 expected)"]


def test_demo_journeys_are_real_orders() -> None:
    journeys = demo_journeys(limit=50)
    assert len(journeys) == 50
    for journey in journeys:
        kinds = [s.event_type for s in journey.steps]
        assert kinds[-2:] == ["add_to_cart", "purchase"] and set(kinds[:-2]) == {"product_view"}


def locust(host: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "load_tests" / "locustfile.py"), "--headless",
         "-u", "4", "-r", "4", "-t", "4s", "--host", host, "--dataset", "demo", "--only-summary",
         "--csv", str(tmp_path / "smoke"), "--html", str(tmp_path / "smoke.html"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_smoke_run_passes_its_slos_and_writes_reports(live, tmp_path: Path) -> None:  # noqa: ANN001, F811
    server, _ = live
    result = locust(server.url, tmp_path, "--slo-p99-ms", "2000")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SLOs met" in result.stdout + result.stderr
    stats = (tmp_path / "smoke_stats.csv").read_text()
    for name in ("/v1/events [product_view]", "/v1/recommendations [home]", "/v1/recommendations [product]"):
        assert name in stats
    assert (tmp_path / "smoke.html").stat().st_size > 1000


def test_a_breached_slo_fails_the_run(live, tmp_path: Path) -> None:  # noqa: ANN001, F811
    server, _ = live
    result = locust(server.url, tmp_path, "--slo-p99-ms", "0.001")
    assert result.returncode == 1
    assert "SLO BREACH" in result.stdout + result.stderr


@pytest.mark.parametrize("host", ["http://10.1.2.3:8000", "http://example.com"])
def test_refuses_remote_hosts_without_allow_remote(host: str, tmp_path: Path) -> None:
    result = locust(host, tmp_path)
    assert result.returncode != 0
    assert "--allow-remote" in result.stdout + result.stderr


def test_benchmarks_need_only_the_base_install() -> None:
    """`vitrine bench` and bench_rules run after `pip install -e .`: no load-test extra (locust)."""
    code = ("import sys; sys.modules['locust'] = None\n"
            "import load_tests.bench, load_tests.bench_rules, load_tests.bench_stream, load_tests.bench_limits, "
            "load_tests.burst")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_bench_report_flags_a_client_bound_load() -> None:
    """A throughput set by the load generator (a full core of its own CPU) is named as such."""
    from load_tests.bench import markdown

    def result(name: str, client_cpu: float) -> dict[str, object]:
        return {"name": name, "connections": 32, "requests": 1, "rps": 1.0, "p50_ms": 1, "p90_ms": 1,
                "p99_ms": 1, "errors": 0, "non_200": 0, "client_cpu": client_cpu}

    def report(noop_cpu: float) -> str:
        run = {"workers": 2, "results": [result("noop", noop_cpu), result("recommendations:home", 0.4)],
               "ratios": {}, "freshness_ms": dict.fromkeys(
                   ("samples", "p50", "p90", "p99", "accept_p50", "accept_p99"), 1)}
        return markdown({"started_at": "now", "machine": {"cpus": 2, "python": "3.11"},
                         "model": {"items": 1, "users": 1}, "config": {"seconds": 1, "redis": "unix socket"}, "runs": [run],
                         "apply": dict.fromkeys(("events", "events_per_s_storing_lists", "events_per_s_without_lists"), 1),
                         "memory": dict.fromkeys(("redis_version", "profiles_sampled", "bytes_per_profile_mean",
                                                  "bytes_per_profile_p50", "bytes_per_profile_p90",
                                                  "bytes_per_profile_max", "json_bytes_mean",
                                                  "dedup_bytes_per_visitor_mean", "for_you_list_bytes_mean"), 1)})

    assert "client-bound" in report(0.97) and "noop at 32 connections" in report(0.97)
    assert "client-bound" not in report(0.5)


def test_loads_taken_in_rounds_are_reported_as_one() -> None:
    """The bench alternates the endpoints in rounds; each endpoint's rounds pool into one load."""
    from load_tests.httpload import LoadResult

    first = LoadResult("noop", 1, 2.0, [1.0, 2.0, 3.0], 0, {200: 3}, client_cpu=0.5, server_cpu_s=0.003, answered=5)
    second = LoadResult("noop", 1, 1.0, [4.0], 1, {200: 1, 503: 1}, client_cpu=0.8, server_cpu_s=0.001, answered=3)
    both = LoadResult.combined([first, second])
    assert (both.name, both.connections, both.seconds, both.requests) == ("noop", 1, 3.0, 4)
    assert both.rps == 4 / 3 and both.percentile(50) == 2.5
    assert both.errors == 1 and both.statuses == {200: 4, 503: 1}
    assert both.client_cpu == (0.5 * 2 + 0.8 * 1) / 3
    assert both.server_cpu_us == pytest.approx(500.0)  # warm-up requests count: the CPU covers them
    assert LoadResult("noop", 1, 1.0).server_cpu_us is None  # not measured


def test_the_load_generator_counts_degraded_answers() -> None:
    """A recommendation answered from the model alone (``"degraded":true``) is counted, so that a
    load that measured the cheaper path says so."""
    import asyncio

    from load_tests.httpload import run_load

    async def load() -> tuple[int, int]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = 0
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    body = b'{"items":[],"degraded":true}' if n % 2 else b'{"items":[]}'
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    n += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()  # the load generator hung up

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result = await run_load("home", "127.0.0.1", port, lambda n: "/", connections=1, seconds=0.3, warmup_s=0)
        server.close()
        return result.requests, result.degraded

    requests, degraded = asyncio.run(load())
    assert requests > 10 and abs(degraded - requests / 2) <= 1


def test_the_server_cpu_read_covers_the_process_and_its_children() -> None:
    """The bench's server with several workers is a parent and its worker processes."""
    from load_tests.reports import process_cpu_s

    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, "
                               "'-c', 'import time\\nend = time.process_time() + 0.5\\nwhile time.process_time() < end: pass'])"])
    try:
        seen = 0.0
        while parent.poll() is None:
            seen = max(seen, process_cpu_s(parent.pid))
            time.sleep(0.02)
        assert seen >= 0.3  # the child's busy half second, read through its parent
    finally:
        parent.wait()


def test_bench_reports_the_log_of_a_server_that_failed(tmp_path: Path) -> None:
    """The bench's server logs to a file, not to a pipe that nobody reads while it measures (a
    server logging errors filled one and stopped), and a server that failed shows that log."""
    from engine.store.server import free_port
    from load_tests.bench import start_server, wait_ready

    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path), "VITRINE_SESSION_TIMEOUT_S": "half an hour"}
    port, log = free_port(), tmp_path / "server.log"
    proc = start_server(port, 1, env, log)
    try:
        with pytest.raises(RuntimeError, match="(?s)server exited.*session_timeout_s"):
            wait_ready(port, proc, log)
        assert "session_timeout_s" in log.read_text()
    finally:
        proc.kill()
        proc.wait()


def test_bench_new_items_are_left_out_of_training_and_loaded_after_it(redis_url: str, tmp_path: Path) -> None:
    """``vitrine bench --new-items``: the held-out items give no training rows, and the catalogue
    loaded after training has them (in stock), so they are new to the model."""
    import asyncio

    import redis as redis_sync

    from engine.events.history import interactions
    from engine.store import keys
    from load_tests.bench import AllBut, held_out_items, load_items

    items_csv = tmp_path / "items.csv"
    items_csv.write_text("item_id,title,category,in_stock\nm1,Mug,home,true\nm2,Cup,home,true\n"
                         "n1,New mug,home,true\no1,Old mug,home,false\n")
    held = held_out_items(items_csv, every=2)
    assert held == {"m1", "n1"}
    events = [{"event_id": f"e{n}", "type": "purchase", "visitor_id": "v", "item_id": item, "ts": 1000.0 + n}
              for n, item in enumerate(["m1", "m2", "n1"])]
    assert {row.item_id for row in interactions(events, catalogue=AllBut(held))} == {"m2"}
    assert sorted(asyncio.run(load_items(redis_url, items_csv))) == ["m1", "m2", "n1"]
    assert redis_sync.Redis.from_url(redis_url).hexists(keys.catalogue_keys(False).items, "n1")


def test_bench_on_a_cluster_reports_both_redis_setups_side_by_side(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``vitrine bench --cluster``, tiny: in one run, the same shop served from one Redis and from a
    real 3-primary, 3-replica Redis Cluster, each endpoint answered without an error on both, with
    the ratios to each one's own no-op, the Redis commands per request, and cluster / single."""
    from load_tests.bench import BenchConfig, markdown, run

    # The servers' Redis budget is 1 s, not 50 ms, as in the other tests (tests/conftest.py): on a
    # loaded test machine a read can miss 50 ms, and the breaker would then skip Redis for a second.
    monkeypatch.setenv("VITRINE_REDIS_TIMEOUT_S", "1")

    report = run(BenchConfig(seconds=0.8, connections=4, workers=(1,), visitors=60, freshness_samples=5,
                             cluster=True, out_dir=tmp_path))
    runs = {run_["redis"]: run_ for run_ in report["runs"]}
    assert sorted(runs) == ["cluster", "single"] and all(r["workers"] == 1 for r in runs.values())
    for run_ in runs.values():
        results = {(r["name"], r["connections"]): r for r in run_["results"]}
        assert sorted(results) == [("noop", 1), ("noop", 4), ("recommendations:home", 1), ("recommendations:home", 4)]
        for r in results.values():
            assert r["requests"] > 50 and r["rps"] > 0 and r["errors"] == 0 and r["non_200"] == 0
            assert r["degraded"] == 0  # every answer read Redis
            assert 0 < r["p50_ms"] <= r["p99_ms"] < 1000 and r["server_cpu_us"] > 0
        # A home request reads its visitor's keys with one MGET (one slot, on the cluster too); a
        # no-op reads nothing, so only background polls count there.
        for connections in (1, 4):
            assert 0.9 <= results[("recommendations:home", connections)]["redis_commands_per_request"] < 3
            assert results[("noop", connections)]["redis_commands_per_request"] < 0.1
        assert {"p99_ratio_c1", "rps_ratio_c4", "server_cpu_ratio_c1"} <= set(run_["ratios"])
        assert all(v > 0 for v in run_["ratios"].values())
        assert run_["freshness_ms"]["samples"] == 5
    versus = report["cluster_vs_single"]["1"]
    assert {"home_p50_c1", "home_p99_c1", "home_rps_c4", "home_server_cpu_c1", "home_redis_commands_c1",
            "noop_rps_c1"} <= set(versus)
    assert all(0.05 < v < 20 for v in versus.values())
    assert report["apply"]["cluster_events_per_s_storing_lists"] > 0
    text = markdown(report)
    assert "1 uvicorn worker(s), one Redis" in text and "a Redis Cluster (3 primaries + 3 replicas)" in text
    assert "## Redis Cluster / one Redis" in text and "home_p99_c1 = " in text
