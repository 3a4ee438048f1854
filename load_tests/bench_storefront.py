"""How fast the demo storefront's home page renders and its strip appears, in a real browser:
``python -m load_tests.bench_storefront``.

It starts its own redis-server and ``vitrine serve`` (demo storefront on, one worker) on free
127.0.0.1 ports, with a small slice of the demo shop (the first invoice lines of Online Retail II,
imported, and a small model trained on them), and drives headless Chromium (``/usr/bin/chromium``,
Playwright) at the home page: cold (a new browser context: no cache, no cookies, a new visitor)
and warm (back to it from another page of the site), N times each. Next to it, in the same rounds, a no-op:
the same home page's HTML without the snippet, served as the shop's pages are (uvicorn, one worker,
``Cache-Control: no-store``; its stylesheet still comes from Vitrine), so the figures also read as ratios.

Per load it reads the Navigation Timing (first contentful paint, DOMContentLoaded, load), the
snippet's ``vitrine:strip:home`` mark (the for-you strip is in the page), and the Resource Timing
of each request (when it started and ended: where the time goes), and, from the server's own
``/metrics``, the mean time it spent on each route. ``--trace`` also saves a Chromium trace of one
warm load (open it in chrome://tracing or Perfetto).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from engine.settings import Settings
from engine.store.server import free_port, start_redis
from engine.threads import limit_blas_threads
from load_tests import noop_page, reports
from load_tests.bench import ADMIN_KEY, UNREACHED_LIMITS, log_tail, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STRIP_MARK = "vitrine:strip:home"
PAGE_ROUTE = "/v1/page"  # the snippet's one request for the page's strips and blocks
DATA_LINES = 20_000  # invoice lines of the demo shop's data: ~2,500 items, ~600 customers
IDENTITY_SECRET = "bench-identity-secret-not-a-secret"
SNIPPET_TAG = re.compile(r"<script [^>]*src=\"/sdk/[^\"]*vitrine\.js\"[^>]*></script>\s*")

# Read in the page once it is loaded (and, for the shop, once its strip is in).
_READ = """(mark) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const strip = performance.getEntriesByName(mark)[0];
  const resources = performance.getEntriesByType("resource").map(r => {
    const url = new URL(r.name);
    const placement = url.searchParams.get("placement");
    const name = url.pathname.replace(/^\\/assets\\/[0-9a-f]+\\//, "/assets/") + (placement ? "?placement=" + placement : "");
    return {name: name, start: r.startTime, end: r.responseEnd, bytes: r.transferSize};
  });
  return {response_end_ms: nav.responseEnd, fcp_ms: paint ? paint.startTime : null,
          dom_ready_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
          strip_ms: strip ? strip.startTime : null, resources: resources};
}"""
_DONE = """([mark, shop]) => performance.getEntriesByName("first-contentful-paint").length > 0 && (!shop
  || performance.getEntriesByName(mark).length > 0
  || document.querySelector("#for-you[data-vitrine-state=unavailable]") !== null)"""


def _demo_slice(directory: Path, lines: int) -> tuple[Path, Path]:
    """items.csv and events.csv of the first ``lines`` invoice lines of the demo shop's data."""
    from models.datasets import ONLINE_RETAIL, write_online_retail

    source = directory / "retail.csv.gz"
    with gzip.open(ONLINE_RETAIL, "rt", encoding="utf-8", newline="") as src, \
            gzip.open(source, "wt", encoding="utf-8", newline="") as dst:
        dst.writelines(itertools.islice(src, lines + 1))
    return write_online_retail(directory / "demo", source=source)


def _prepare(settings: Settings, items: Path, events: Path) -> None:
    """Import the slice (`vitrine import`: catalogue, profiles, trending) and train a small model on it: the shop's
    strips then answer as they do in ``vitrine demo``, from less data."""
    from engine.events.history import interactions
    from engine.ingest.importer import ImportReport, read_events
    from models.als import ALSParams
    from models.train import TrainConfig, train_from_rows

    subprocess.run([sys.executable, "-m", "api.cli", "import", "--items", str(items), "--events", str(events)],
                   env=dict(os.environ), check=True, stdout=subprocess.DEVNULL)
    rows = interactions(e.model_dump() for e in read_events(events, ImportReport(), accepted_at=time.time()))
    train_from_rows(rows, TrainConfig(weights=settings.event_weights, als=ALSParams(factors=16, iterations=8)),
                    settings.models_dir)


def _wait_serving(base: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    """Until the shop's home page and its for-you strip answer (the model is loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_tail(log)}")
        try:
            answer = httpx.get(f"{base}/v1/recommendations?placement=home&visitor_id=bench-probe", timeout=5)
            if answer.status_code == 200 and answer.json()["items"] and httpx.get(base + "/").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the shop did not serve its strips in time:\n{log_tail(log)}")


def _static_copy(base: str, directory: Path) -> None:
    """The home page's HTML without the snippet, its stylesheet and icon still from ``base``."""
    html = httpx.get(base + "/").text
    html, removed = SNIPPET_TAG.subn("", html)
    if removed != 1:
        raise RuntimeError("the home page has no snippet tag to leave out")
    html = html.replace('href="/assets/', f'href="{base}/assets/')
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.html").write_text(html)


@contextmanager
def _servers(tmp: Path, lines: int) -> Iterator[tuple[str, str]]:
    """(the shop's base URL, the no-op's base URL), both on 127.0.0.1, stopped on exit."""
    redis = start_redis(tmp / "redis", persist=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rules = tmp / "rules.yaml"
        rules.write_bytes(resources.files("api.web").joinpath("demo_rules.yaml").read_bytes())
        env = {"VITRINE_REDIS_URL": redis.local_url, "VITRINE_DATA_DIR": str(tmp / "data"),
               "VITRINE_ADMIN_KEY": ADMIN_KEY, "VITRINE_DEMO_STOREFRONT": "true",
               "VITRINE_IDENTITY_SECRET": IDENTITY_SECRET, "VITRINE_RULES_FILE": str(rules), **UNREACHED_LIMITS}
        os.environ.update(env)
        print("preparing the demo data slice and a small model...", flush=True)
        _prepare(Settings(), *_demo_slice(tmp, lines))
        port, log = free_port(), tmp / "server.log"
        procs.append(start_server(port, 1, dict(os.environ), log))
        shop = f"http://127.0.0.1:{port}"
        _wait_serving(shop, procs[-1], log)
        _static_copy(shop, tmp / "static")
        noop_port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "load_tests.noop_page:app",
                                       "--host", "127.0.0.1", "--port", str(noop_port), "--no-access-log"],
                                      env={**os.environ, noop_page.PAGE: str(tmp / "static" / "index.html")},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        noop = f"http://127.0.0.1:{noop_port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(noop + "/")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield shop, noop
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        redis.stop()


def server_times(base: str) -> dict[str, dict[str, float]]:
    """Mean ms the server spent per route and method (``/metrics``), with the request count."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(httpx.get(base + "/metrics").text):
        if family.name != "vitrine_http_request_duration_seconds":
            continue
        for sample in family.samples:
            key = f"{sample.labels['method']} {sample.labels['route']}"
            if sample.name.endswith("_sum"):
                sums[key] += sample.value
            elif sample.name.endswith("_count"):
                counts[key] += sample.value
    return {key: {"mean_ms": round(1000 * sums[key] / counts[key], 2), "count": int(counts[key])}
            for key in sorted(counts) if counts[key]}


def _load(page: Any, url: str, shop: bool) -> dict[str, Any]:
    """Nothing is evaluated in the page until it is loaded and the strip's answer is in: Playwright's
    in-page helpers (``wait_for_function``, selectors) compile a large script on their first use,
    which would hold the page's main thread just while the snippet renders."""
    if shop:
        with page.expect_response(lambda r: r.url.endswith(PAGE_ROUTE), timeout=15_000) as answer:
            page.goto(url, wait_until="load")
        answer.value.finished()
    else:
        page.goto(url, wait_until="load")
    deadline = time.monotonic() + 15
    while not page.evaluate(_DONE, [STRIP_MARK, shop]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: no first paint or no strip")
        page.wait_for_timeout(20)
    return page.evaluate(_READ, STRIP_MARK)


def measure(shop: str, noop: str, rounds: int, trace: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each round: the shop and the no-op, each cold (a new context) then warm (its next visit)."""
    from playwright.sync_api import sync_playwright

    loads: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for round_ in range(rounds + 1):  # round 0 warms the browser and the server up, unrecorded
                for name, url, is_shop, between in (("shop", shop, True, "/cart"),
                                                    ("no-op", noop, False, "/index.html")):
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    cold = _load(page, url + "/", is_shop)
                    page.goto(url + between)  # the visitor comes back to the home page from another one
                    tracing = trace is not None and round_ == rounds and is_shop
                    if tracing:
                        browser.start_tracing(page=page, path=str(trace))
                    warm = _load(page, url + "/", is_shop)
                    if tracing:
                        browser.stop_tracing()
                    context.close()
                    if round_:
                        loads[f"{name} cold"].append(cold)
                        loads[f"{name} warm"].append(warm)
        finally:
            browser.close()
    return dict(loads)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)


METRICS = ("fcp_ms", "dom_ready_ms", "load_ms", "strip_ms")


def summarise(loads: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """p50/p95 of each metric per kind of load, the shop/no-op ratios of the p50s, and the median
    start and end of each request the shop's pages made."""
    table: dict[str, dict[str, Any]] = {}
    for kind, runs in loads.items():
        row: dict[str, Any] = {"loads": len(runs)}
        for metric in METRICS:
            values = [r[metric] for r in runs if r[metric] is not None]
            row[metric] = {"p50": _pct(values, 50), "p95": _pct(values, 95)} if values else None
        row["strip_missing"] = sum(1 for r in runs if r["strip_ms"] is None) if kind.startswith("shop") else 0
        table[kind] = row
    ratios = {}
    for temperature in ("cold", "warm"):
        shop, noop = table.get(f"shop {temperature}"), table.get(f"no-op {temperature}")
        if shop and noop:
            ratios[temperature] = {m: round(shop[m]["p50"] / noop[m]["p50"], 2) for m in ("fcp_ms", "dom_ready_ms",
                                                                                        "load_ms")
                                   if shop[m] and noop[m] and noop[m]["p50"]}
    requests: dict[str, dict[str, dict[str, float]]] = {}
    for kind in ("shop cold", "shop warm"):
        starts: dict[str, list[float]] = defaultdict(list)
        ends: dict[str, list[float]] = defaultdict(list)
        for run in loads.get(kind, []):
            for r in run["resources"]:
                name = r["name"]
                starts[name].append(r["start"])
                ends[name].append(r["end"])
        requests[kind] = {name: {"start_ms": round(statistics.median(starts[name]), 1),
                                 "end_ms": round(statistics.median(ends[name]), 1), "count": len(starts[name])}
                          for name in sorted(starts, key=lambda n: statistics.median(starts[n]))}
    return {"table": table, "ratios": ratios, "requests": requests}


def markdown(report: dict[str, Any]) -> str:
    lines = ["| load | first paint p50 / p95 ms | DOMContentLoaded p50 / p95 | load p50 / p95 | strip p50 / p95 |",
             "|---|---|---|---|---|"]
    for kind, row in report["summary"]["table"].items():
        cells = [f"{row[m]['p50']} / {row[m]['p95']}" if row[m] else "-" for m in METRICS]
        lines.append(f"| {kind} ({row['loads']}) | " + " | ".join(cells) + " |")
    lines.append("")
    for temperature, ratio in report["summary"]["ratios"].items():
        lines.append(f"shop / no-op p50, {temperature}: " + ", ".join(f"{k} {v}" for k, v in ratio.items()))
    for kind, requests in report["summary"]["requests"].items():
        lines += ["", f"{kind}, requests (median start -> end, ms from navigation start):"]
        lines += [f"  {name}: {r['start_ms']} -> {r['end_ms']}" for name, r in requests.items()]
    lines += ["", "server, mean ms per request (count), all rounds:"]
    lines += [f"  {key}: {t['mean_ms']} ({t['count']})" for key, t in report.get("server_ms", {}).items()]
    if "load_average" in report:
        lines += ["", f"load average (1, 5, 15 min) before: {report['load_average']['before']}, "
                      f"after: {report['load_average']['after']}"]
    return "\n".join(lines) + "\n"


def run(rounds: int, lines: int = DATA_LINES, trace: Path | None = None) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="vitrine-bench-storefront-") as tmp_name:
        with _servers(Path(tmp_name), lines) as (shop, noop):
            print(f"measuring {rounds} rounds...", flush=True)
            load_before = os.getloadavg()
            loads = measure(shop, noop, rounds, trace)
            server = server_times(shop)
    return {"started_at": started, "rounds": rounds, "data_lines": lines, "loads": loads,
            "load_average": {"before": [round(x, 2) for x in load_before],
                             "after": [round(x, 2) for x in os.getloadavg()]},
            "server_ms": server, "summary": summarise(loads)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="cold and warm loads of each page")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    parser.add_argument("--trace", action="store_true", help="also save a Chromium trace of one warm load")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package")
    limit_blas_threads()
    stem = reports.stem(args.out, "storefront")
    report = run(args.rounds, trace=stem.with_suffix(".trace.json") if args.trace else None)
    reports.save(stem, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
