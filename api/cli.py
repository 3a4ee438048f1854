"""The ``vitrine`` command.

    vitrine demo                      import the demo shop, train, serve (the newcomer's command)
    vitrine serve [--host --port --workers]
    vitrine import [--items items.csv] [--events events.csv]
    vitrine train                     train, compare with the served model on held-out data, promote if not worse
    vitrine evaluate (--events events.csv [--items items.csv] | --dataset taobao|online-retail)
    vitrine worker                    (Kafka mode) apply the events topic to the profiles
    vitrine replay [--reset]          apply the event log past its checkpoint; --reset: rebuild everything
    vitrine bench-stream              freshness and events/s, embedded and Kafka
    vitrine bench [--seconds --connections --workers 1 2]
    vitrine check-rules rules.yaml    validate a merchandising rules file

Without ``VITRINE_REDIS_URL`` the commands of one data dir share a local redis-server that keeps
its data in ``$VITRINE_DATA_DIR/redis``, started by the first and stopped by the last: that is the
embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from engine.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from engine.ingest.apply import EventApplier
    from engine.catalog import Catalogue


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[str]:
    """The configured Redis, else the data dir's own redis-server: the one already running for
    another command (e.g. `vitrine serve`), or one started now and stopped by its last user."""
    if settings.redis_url:
        yield settings.redis_url
        return
    from engine.store.server import managed_redis  # noqa: PLC0415

    with managed_redis(settings.redis_dir, maxmemory=int(settings.redis_maxmemory),
                       maxmemory_policy=settings.redis_maxmemory_policy) as url:
        yield url


def ensure_admin_key(settings: Settings) -> str:
    """An explicit VITRINE_ADMIN_KEY, else one generated once into the data dir (mode 0600)."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.data_dir / "admin_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, secrets.token_urlsafe(24).encode())
            os.close(fd)
    return path.read_text().strip()


# ------------------------------------------------------------------------------- import


async def _import(settings: Settings, redis_url: str, items: Path | None, events: Path | None) -> None:
    from engine.catalog import upsert_items  # noqa: PLC0415
    from engine.ingest.importer import ImportReport, read_items  # noqa: PLC0415
    from engine.runtime import Engine  # noqa: PLC0415

    engine = Engine(settings, redis_url)
    try:
        if items is not None:
            report = ImportReport()
            batch = []
            for item in read_items(items, report):
                batch.append(item)
                if len(batch) == 5000:
                    await upsert_items(engine.redis, batch)
                    batch = []
            await upsert_items(engine.redis, batch)
            _print_report("items", items, report)
        await engine.catalogue.refresh()
        engine.rules.reload(force=True)  # experiment counters count the arms of the rules file only
        if events is not None and settings.mode == "kafka":
            await _import_to_topic(settings, events)
        elif events is not None:
            await _import_to_log(settings, engine.applier, engine.redis, events)
    finally:
        await engine.redis.aclose()


async def _import_to_log(settings: Settings, applier: EventApplier, redis: Redis, events: Path) -> None:
    """Embedded mode: imported events go to the log like accepted ones (what train and replay
    read), each batch applied and the checkpoint moved past it, so a start never applies them
    again and an import cut short is finished by the next start."""
    from engine.ingest.checkpoint import Checkpoint  # noqa: PLC0415
    from engine.events.log import EventLog  # noqa: PLC0415
    from engine.ingest.importer import ImportReport, read_events  # noqa: PLC0415

    report, checkpoint = ImportReport(), Checkpoint(redis)
    event_log = EventLog(settings.log_dir, segment_bytes=settings.log_segment_bytes, fsync=settings.log_fsync)
    started, applied, batch = time.perf_counter(), 0, []

    def unwritable(exc: OSError) -> SystemExit:
        return SystemExit(f"vitrine import: cannot write the event log in {settings.log_dir} "
                          f"({exc.strerror or exc}); the events before are imported, run the import again "
                          f"once fixed (already-seen events are skipped)")

    async def flush() -> int:
        try:
            span = event_log.write(batch)
        except OSError as exc:
            raise unwritable(exc) from None
        if span is None:
            return 0
        stats = await applier.apply(batch)
        await checkpoint.save({span.segment: span.end})
        return stats.applied

    try:
        for event in read_events(events, report, accepted_at=time.time()):
            batch.append(event)
            if len(batch) == 1000:
                applied += await flush()
                batch = []
        applied += await flush()
        try:
            event_log.flush()
        except OSError as exc:
            raise unwritable(exc) from None
    finally:
        event_log.close()
    _print_report("event lines", events, report)
    print(f"  {applied} events applied to profiles in {time.perf_counter() - started:.1f}s "
          f"(already-seen events are skipped)")


async def _import_to_topic(settings: Settings, events: Path) -> None:
    """Kafka mode: the topic is the history (what train and replay read), so imported events go
    there like any other and the workers apply them."""
    from engine.ingest.importer import ImportReport, read_events  # noqa: PLC0415
    from streaming.producer import KafkaSink  # noqa: PLC0415

    sink, report, sent, batch = KafkaSink(settings), ImportReport(), 0, []
    started = time.perf_counter()
    try:
        for event in read_events(events, report, accepted_at=time.time()):
            batch.append(event)
            if len(batch) == 1000:
                await sink.submit(batch)
                sent, batch = sent + len(batch), []
        if batch:
            await sink.submit(batch)
            sent += len(batch)
    finally:
        await sink.close()
    _print_report("event lines", events, report)
    print(f"  {sent} events sent to topic {settings.kafka_events_topic} in {time.perf_counter() - started:.1f}s; "
          f"the workers apply them")


def _print_report(what: str, path: Path, report: object) -> None:
    print(f"{path}: {report.loaded}/{report.rows} {what} loaded, {report.error_count} rejected")  # type: ignore[attr-defined]
    for line in report.errors:  # type: ignore[attr-defined]
        print(f"  {line}")


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    if args.items is None and args.events is None:
        print("vitrine import: give --items and/or --events", file=sys.stderr)
        return 2
    for path in (args.items, args.events):
        if path is not None and not path.exists():
            print(f"vitrine import: no such file: {path}", file=sys.stderr)
            return 2
    with redis_for(settings) as url:
        asyncio.run(_import(settings, url, args.items, args.events))
    return 0


# ------------------------------------------------------------------------------- train


def train(settings: Settings) -> str:
    from api.quality_cli import gated_train  # noqa: PLC0415
    from engine.events.history import interactions_from_log  # noqa: PLC0415

    started = time.perf_counter()
    since = time.time() - settings.train_window_s
    catalogue = _catalogue_ids(settings)
    if settings.mode == "kafka":
        from engine.events.history import interactions  # noqa: PLC0415
        from streaming.topics import history  # noqa: PLC0415

        rows = interactions(history(settings), settings.consent_required, since, catalogue)
    else:
        rows = interactions_from_log(settings.log_dir, settings.consent_required, since, catalogue)
    artifact, decision = gated_train(rows, settings)
    data = artifact.meta["data"]
    print(f"trained model {artifact.version} in {time.perf_counter() - started:.1f}s: "
          f"{data['events']} interactions, {data['users']} people, {data['items']} items, "
          f"{data['baskets']} orders -> {settings.models_dir / artifact.version}")
    verdict = "promoted" if decision.promoted else f"NOT promoted (still serving {decision.current_version})"
    print(f"{verdict}: {decision.reason}")
    return artifact.version


def _catalogue_ids(settings: Settings) -> set[str] | None:
    """The catalogue's item ids, which training keeps to; None when there is no catalogue, or
    when Redis cannot be read (then training uses every item the events name, and says so)."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from engine.catalog import item_ids  # noqa: PLC0415
    from engine.runtime import connect  # noqa: PLC0415

    async def read(url: str) -> set[str]:
        redis = connect(url, timeout_s=settings.redis_socket_timeout_s)
        try:
            return await item_ids(redis)
        finally:
            await redis.aclose()

    try:
        with redis_for(settings) as url:
            return asyncio.run(read(url)) or None
    except (RedisError, OSError, RuntimeError) as exc:
        print(f"vitrine train: the catalogue could not be read ({exc}); training on every item the events "
              "name", file=sys.stderr)
        return None


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    try:
        train(settings)
    except ValueError as exc:
        print(f"vitrine train: {exc}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------- serve


def _serve(settings: Settings, redis_url: str, banner: str | None = None) -> None:
    import uvicorn  # noqa: PLC0415

    from api.server import raise_open_files_limit, uvicorn_options  # noqa: PLC0415

    raise_open_files_limit()  # before the workers start: they inherit it
    os.environ["VITRINE_REDIS_URL"] = redis_url
    os.environ["VITRINE_ADMIN_KEY"] = ensure_admin_key(settings)
    os.environ["VITRINE_DATA_DIR"] = str(settings.data_dir.resolve())
    if settings.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if banner:
        print(banner, flush=True)
    retrainer = None
    if settings.retrain_interval_s and settings.mode == "embedded":
        from api.metrics import export_task_failures  # noqa: PLC0415
        from api.retrain import Retrainer  # noqa: PLC0415

        export_task_failures()  # this process is not an app's when there are several workers
        retrainer = Retrainer(settings.retrain_interval_s, dict(os.environ))
        retrainer.start()
    # uvicorn shuts down gracefully on SIGTERM (what process managers and `docker stop` send),
    # then raises the signal again with the handler it found installed. Python's default would
    # end the process there, skipping the cleanup below and the managed Redis's (its data unsaved,
    # the server left running); this handler exits normally instead, as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _exit_after_shutdown)
    try:
        uvicorn.run("api.app:app_factory", factory=True, host=settings.host, port=settings.port,
                    workers=settings.workers, loop="uvloop", log_level="warning", access_log=False,
                    lifespan="on", **uvicorn_options(settings))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if retrainer is not None:
            retrainer.stop()


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = _with_http_args(args, settings)
    with redis_for(settings) as url:
        base = f"http://{settings.host}:{settings.port}"
        _serve(settings, url, f"Vitrine serving on {base} ({settings.workers} worker(s), "
                              f"{settings.mode} mode). Ctrl-C stops it.")
    return 0


def _with_http_args(args: argparse.Namespace, settings: Settings) -> Settings:
    updates = {k: getattr(args, k) for k in ("host", "port", "workers") if getattr(args, k, None) is not None}
    return settings.model_copy(update=updates)


# ------------------------------------------------------------------------------- demo


def demo_banner(base: str, admin_key: str, visitor: str, item: str, customer: str) -> str:
    return f"""
Vitrine demo shop (UCI Online Retail II, CC BY 4.0) is serving on {base}. Ctrl-C stops it.
  The shop: {base}/    the merchandiser console: {base}/console (sign in with the admin key: {admin_key})
Try the API:
  curl -s '{base}/v1/recommendations?placement=home&visitor_id={visitor}'
  curl -s -X POST {base}/v1/events -H 'content-type: application/json' -d '{{"event_id": "e-{secrets.token_hex(3)}", "type": "product_view", "visitor_id": "{visitor}", "item_id": "{item}"}}'
  curl -s '{base}/v1/recommendations?placement=product&visitor_id={visitor}&item_id={item}'
  curl -s -H 'X-API-Key: {admin_key}' '{base}/v1/recommendations?placement=home&customer_id={customer}'
  curl -s -H 'X-API-Key: {admin_key}' {base}/v1/profiles/{visitor}
  API docs: {base}/docs    metrics: {base}/metrics
"""


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from models import artifacts  # noqa: PLC0415
    from models.datasets import write_online_retail  # noqa: PLC0415

    settings = _with_http_args(args, settings)
    demo_dir = settings.data_dir / "demo"
    marker = demo_dir / ".imported"
    with redis_for(settings) as url:
        if not marker.exists():
            print("Preparing the demo shop from UCI Online Retail II (first run only)...", flush=True)
            items, events = write_online_retail(demo_dir)
            asyncio.run(_import(settings, url, items, events))
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if artifacts.current_version(settings.models_dir) is None:
            train(settings)
        base = f"http://{settings.host}:{settings.port}"
        admin_key = ensure_admin_key(settings)
        from api.web.demo import demo_environment  # noqa: PLC0415

        os.environ.update(demo_environment(settings, demo_dir))
        _serve(settings, url, demo_banner(base, admin_key, "demo-visitor-1", "85123A", "13085"))
    return 0


# ------------------------------------------------------------------------------- streaming


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streaming.worker import run_worker  # noqa: PLC0415

    with redis_for(settings) as url:
        run_worker(settings, url, loglevel=args.loglevel)
    return 0


async def _replay(settings: Settings, redis_url: str, reset: bool) -> int:
    from engine.ingest import catchup  # noqa: PLC0415
    from engine.ingest import replay  # noqa: PLC0415
    from engine.runtime import Engine  # noqa: PLC0415

    engine = Engine(settings, redis_url, serve_models=False)
    try:
        if settings.mode == "kafka" and not reset and await replay.has_profiles(engine.redis):
            print("vitrine replay: Redis already holds profiles; --reset deletes them (and the dedup "
                  "memory, trending, exposure and experiment counters) first", file=sys.stderr)
            return 1
        if reset:
            print(f"deleted {await replay.delete_profiles(engine.redis)} profile keys")
        await engine.catalogue.refresh()
        if not len(engine.catalogue.current):
            print("warning: the catalogue is empty; affinities need it (vitrine import --items)", file=sys.stderr)
        engine.rules.reload(force=True)  # experiment counters count the arms of the rules file only
        for error in engine.rules.errors:
            print(f"warning: {error}", file=sys.stderr)
        if settings.mode == "kafka":
            from streaming.topics import topic_events  # noqa: PLC0415

            source = f"topic {settings.kafka_events_topic}"
            stats = await replay.replay(engine.applier, topic_events(settings))
        else:
            source = f"log {settings.log_dir}" + ("" if reset else " past the checkpoint")
            caught_up = await catchup.catch_up(engine.applier, engine.redis, settings.log_dir,
                                               dedup_window_s=settings.dedup_window_s)
            if caught_up.skipped:
                print(f"warning: {caught_up.skipped} events could not be applied (see the errors above)",
                      file=sys.stderr)
            if caught_up.assumed_applied:
                print(f"note: no checkpoint yet and Redis holds profiles: events accepted more than "
                      f"{settings.dedup_window_s}s ago were taken as applied; --reset rebuilds everything",
                      file=sys.stderr)
            stats = caught_up
        print(f"replayed {stats.events} events from {source} in {stats.seconds:.1f}s: "
              f"{stats.applied} applied, {stats.duplicates} duplicates skipped")
        return 0
    finally:
        await engine.redis.aclose()


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    with redis_for(settings) as url:
        return asyncio.run(_replay(settings, url, args.reset))


def cmd_bench_stream(args: argparse.Namespace, settings: Settings) -> int:
    from load_tests.bench_stream import run_bench  # noqa: PLC0415
    from load_tests.sessions import taobao_stream  # noqa: PLC0415

    args.taobao = args.taobao or taobao_stream(settings)
    return run_bench(settings, samples=args.samples, events=args.events, out_dir=args.out, taobao=args.taobao)


# ------------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from load_tests.bench import BenchConfig, markdown, run, write_reports  # noqa: PLC0415

    config = BenchConfig(seconds=args.seconds, connections=args.connections, workers=tuple(args.workers),
                         visitors=args.visitors, out_dir=args.out)
    report = run(config)
    print(markdown(report))
    json_path, md_path = write_reports(report, args.out)
    print(f"reports: {json_path} {md_path}")
    return 0


# ------------------------------------------------------------------------------- check-rules


def _catalogue_for_rules(settings: Settings) -> tuple[Catalogue | None, str]:
    """The catalogue the service would check pins against: in the configured Redis, else in the
    data dir's redis-server if one is running (none is started for a check: a fresh one would
    hold nothing, or load a whole shop's data to read one hash). Else None and why."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from engine.catalog import load_catalogue  # noqa: PLC0415
    from engine.store.server import running_url  # noqa: PLC0415
    from engine.runtime import connect  # noqa: PLC0415

    url = settings.redis_url or running_url(settings.redis_dir)
    if url is None:
        return None, (f"no Redis to read the catalogue from (VITRINE_REDIS_URL is not set and no redis-server "
                      f"is running for {settings.redis_dir})")

    async def load() -> Catalogue:
        redis = connect(url, timeout_s=5.0)
        try:
            return await load_catalogue(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(load()), ""
    except (RedisError, OSError, TimeoutError) as exc:
        return None, f"the catalogue is not reachable ({type(exc).__name__}: {exc})"


def cmd_check_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Validate a rules file before deploying it, as the service would: schema, references,
    windows against VITRINE_EXPOSURE_RETENTION_S, and pinned and promoted items against the
    catalogue when one is reachable (a warning says when it is not). Exit 0 valid, 1 invalid,
    2 the file cannot be read."""
    from engine.merch.live import parse_file  # noqa: PLC0415
    from engine.merch.loader import RulesInvalid  # noqa: PLC0415

    path: Path = args.path
    try:
        text = path.read_bytes()
    except OSError as exc:
        print(f"vitrine check-rules: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    catalogue, why = _catalogue_for_rules(settings)
    if catalogue is not None and not len(catalogue):
        why = "the catalogue is empty (the service checks nothing against an empty catalogue)"
    item_exists = catalogue.may_name if catalogue is not None else None
    try:
        snapshot = parse_file(text, str(path), item_exists, settings.exposure_retention_s)
    except RulesInvalid as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        code = 1
    else:
        print(f"{path}: valid, version {snapshot.version}")
        code = 0
    if why:
        print(f"warning: pinned and promoted items not checked: {why}", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from api import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="vitrine", description="Real-time recommendations for e-commerce.")
    parser.add_argument("--version", action="version", version=f"vitrine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def http_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="default $VITRINE_HOST or 127.0.0.1")
        p.add_argument("--port", type=int, help="default $VITRINE_PORT or 8000")
        p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")

    p = sub.add_parser("demo", help="import the demo shop (first run), train, and serve")
    http_args(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("serve", help="serve the HTTP API")
    http_args(p)
    p.set_defaults(func=cmd_serve)
    from engine.ingest.importer import EVENT_COLUMNS, ITEM_COLUMNS  # noqa: PLC0415

    p = sub.add_parser("import", help="load items and/or historical events from CSV")
    p.add_argument("--items", type=Path, help="items.csv: " + ",".join(ITEM_COLUMNS))
    p.add_argument("--events", type=Path, help="events.csv: " + ",".join(EVENT_COLUMNS))
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("train", help="train a model from the event history; promote it unless it is worse")
    p.set_defaults(func=cmd_train)
    from api.quality_cli import add_parser as add_evaluate  # noqa: PLC0415

    add_evaluate(sub)
    p = sub.add_parser("worker", help="(Kafka mode) apply the events topic to the profiles; run one or more")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("replay", help="apply what the event log holds past its checkpoint (embedded); with "
                                      "--reset, rebuild every profile from the log or topic (Kafka)")
    p.add_argument("--reset", action="store_true", help="delete existing profiles, dedup memory, trending, exposure and experiment counters first")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("bench-stream", help="measure freshness (embedded and Kafka) and events/s per worker")
    p.add_argument("--samples", type=int, default=300, help="freshness samples per mode")
    p.add_argument("--events", type=int, default=50000, help="events for the throughput run")
    p.add_argument("--taobao", type=Path, help="Taobao UserBehavior stream sample (default: in ../shared/data or $VITRINE_SHARED_DATA_DIR)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    p.set_defaults(func=cmd_bench_stream)
    p = sub.add_parser("bench", help="measure the serving numbers on this machine (starts its own servers)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each load (default 5)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to try")
    p.add_argument("--visitors", type=int, default=2000, help="visitor profiles to create (default 2000)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where to write the reports")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("check-rules", help="validate a merchandising rules file (exit 1 when invalid)")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_check_rules)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - a settings error is the user's to fix, say it plainly
        print(f"vitrine: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
