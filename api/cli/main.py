"""The ``vitrine`` command's argument tree, and the entry point that runs one command.

Each command lives in a module of this package (demo, serve, data, quality, stream, bench, rules),
imported only when its command runs: `vitrine --help` and `vitrine --version` load no numeric
library, no Redis client and no HTTP code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from api import __version__
from engine import logs
from engine.ingest.columns import EVENT_COLUMNS, ITEM_COLUMNS
from models.datasets import DATASETS


def _positive(cast: type[int] | type[float], zero: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrine", description="Real-time recommendations for e-commerce.")
    parser.add_argument("--version", action="version", version=f"vitrine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand run by ``module:function`` of this package."""
        p = sub.add_parser(name, **kwargs)
        p.set_defaults(run=run)
        return p

    def http_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="default $VITRINE_HOST or 127.0.0.1")
        p.add_argument("--port", type=int, help="default $VITRINE_PORT or 8000")
        p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")

    http_args(command("demo", "demo:cmd_demo", help="import the demo shop (first run), train, and serve"))
    http_args(command("serve", "serve:cmd_serve", help="serve the HTTP API"))

    p = command("import", "data:cmd_import", help="load items and/or historical events from CSV")
    p.add_argument("--items", type=Path, help="items.csv: " + ",".join(ITEM_COLUMNS))
    p.add_argument("--events", type=Path, help="events.csv: " + ",".join(EVENT_COLUMNS))

    p = command("train", "quality:cmd_train",
                help="tune and train a model from the event history; promote it unless it is worse")
    p.add_argument("--trials", type=int, help="ALS / event-weight tuning trials (default $VITRINE_TUNE_TRIALS, 8; "
                                              "0: no tuning)")
    p.add_argument("--force", action="store_true", help="promote the new model even when it scores worse than the "
                                                        "served one, or when the hold-out is too small to compare")

    p = command("evaluate", "quality:cmd_evaluate",
                help="measure the served recommender against baselines on a time split")
    p.add_argument("--events", type=Path, help="events.csv in the `vitrine import` format")
    p.add_argument("--items", type=Path, help="items.csv in the `vitrine import` format (optional)")
    p.add_argument("--dataset", choices=sorted(DATASETS), help="a named real dataset instead of CSV files")
    p.add_argument("--test-days", type=_positive(float), help="test period: the data's last N days (default 7; "
                                                   "taobao 1, online-retail 30)")
    p.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=None,
                   help="for-you leaves out items already seen (default: the dataset's, else VITRINE_EXCLUDE_SEEN)")
    p.add_argument("--exclude-purchased", action=argparse.BooleanOptionalAction, default=None,
                   help="leave out items already bought (default: the dataset's, else VITRINE_EXCLUDE_PURCHASED)")
    p.add_argument("--reveal", type=_positive(int, zero=True), default=0, help="session so far: give each person's first N events "
                                                         "after the cut-off and predict what came next (default 0)")
    p.add_argument("--protocol", choices=("people", "sessions"), default="people",
                   help="people: what each person used after the cut-off (default); sessions: cut the log into "
                        "sessions (VITRINE_SESSION_TIMEOUT_S idle), each an anonymous visitor, and predict the next "
                        "item at every step of the held-out ones (HR@20, MRR@20 as session-rec and SR-GNN report)")
    p.add_argument("--trials", type=_positive(int), default=20, help="ALS / event-weight search trials (default 20)")
    p.add_argument("--train-trials", type=_positive(int, zero=True),
                   help="the same for the \"after train\" row (default VITRINE_TUNE_TRIALS, as `vitrine train`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--max-people", type=_positive(int), help="score a seeded sample of at most N people per split")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports folder (default ./reports)")

    p = command("worker", "stream:cmd_worker",
                help="(Kafka mode) apply the events topic to the profiles; run one or more")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])

    p = command("replay", "data:cmd_replay", help="apply what the event log holds past its checkpoint (embedded); "
                                                  "with --reset, rebuild every profile from the log or topic (Kafka)")
    p.add_argument("--reset", action="store_true", help="delete existing profiles, dedup memory, trending, exposure and experiment counters first")

    p = command("bench-stream", "bench:cmd_bench_stream",
                help="measure freshness (embedded and Kafka) and events/s per worker")
    p.add_argument("--samples", type=int, default=300, help="freshness samples per mode")
    p.add_argument("--events", type=int, default=50000, help="events for the throughput run")
    p.add_argument("--taobao", type=Path, help="Taobao UserBehavior stream sample (default: in ../shared/data or $VITRINE_SHARED_DATA_DIR)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")

    p = command("bench", "bench:cmd_bench",
                help="measure the serving numbers on this machine (starts its own servers)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each load (default 5)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to try")
    p.add_argument("--visitors", type=int, default=2000, help="visitor profiles to create (default 2000)")
    p.add_argument("--new-items", action="store_true",
                   help="leave every 50th catalogue item out of training, so that for-you lists explore them")
    p.add_argument("--cluster", action="store_true",
                   help="also start a Redis Cluster (3 primaries + 3 replicas) with the same shop and measure on it, "
                        "next to the single Redis")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where to write the reports")

    p = command("evaluate-customers", "customers:cmd_evaluate_customers",
                help="measure the value and churn scores against recency, RFM and BG/NBD on a time split")
    p.add_argument("--events", type=Path, help="events.csv in the `vitrine import` format")
    p.add_argument("--dataset", choices=["online-retail"], help="a named real dataset instead of a CSV file")
    p.add_argument("--cut", type=_day, action="append", required=True,
                   help="calibrate before this day (YYYY-MM-DD, UTC), hold out the horizon after it; repeatable")
    p.add_argument("--horizon-days", type=_days, default=90.0, help="holdout length (default 90)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports folder (default ./reports)")

    p = command("check-rules", "rules:cmd_check_rules",
                help="validate a merchandising rules file (exit 1 when invalid)")
    p.add_argument("path", type=Path)
    return parser


def _day(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 3650:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3650, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=logs.TEXT_FORMAT)
    args = build_parser().parse_args(argv)
    # The process's entry: before a command module loads the numeric libraries.
    from engine.threads import limit_blas_threads  # noqa: PLC0415 - not for --help and --version

    limit_blas_threads()
    from engine.settings import Settings  # noqa: PLC0415 - pydantic-settings: not for --help and --version

    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - a settings error is the user's to fix, say it plainly
        print(f"vitrine: invalid settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    module, function = args.run.split(":")
    try:
        run = getattr(importlib.import_module(f"api.cli.{module}"), function)
        return int(run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
