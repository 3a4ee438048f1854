"""``vitrine evaluate-customers``: the value and churn scores against recency, RFM and BG/NBD on a
time split (``models.customer_eval``), reported as Markdown, JSON and PNG plots."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from engine.settings import Settings


def read_orders(events: Path) -> list[tuple[str, float, float]]:
    """(customer_id, time, revenue) of every purchase event of a known customer: one event is one
    order (the importer makes one event of an order's consecutive lines)."""
    from api.cli import _print_report  # noqa: PLC0415
    from engine.ingest.importer import ImportReport, read_events  # noqa: PLC0415

    report = ImportReport()
    orders = [(e.customer_id, e.ts, e.order_revenue()) for e in read_events(events, report, accepted_at=time.time())
              if e.type == "purchase" and e.customer_id]
    _print_report("event lines", events, report)
    return orders


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


def cmd_evaluate_customers(args: argparse.Namespace, settings: Settings) -> int:
    from api.quality_cli import prepare_dataset  # noqa: PLC0415
    from models import customer_report  # noqa: PLC0415
    from models.customer_eval import evaluate_cut  # noqa: PLC0415
    from models.customer_value import NotEnoughHistory, Orders  # noqa: PLC0415

    if (args.dataset is None) == (args.events is None):
        print("vitrine evaluate-customers: give --events or --dataset", file=sys.stderr)
        return 2
    events = prepare_dataset(args.dataset, settings)[1] if args.dataset else args.events
    if not events.exists():
        print(f"vitrine evaluate-customers: no such file: {events}", file=sys.stderr)
        return 2
    rows = read_orders(events)
    if not rows:
        print("vitrine evaluate-customers: no purchase of a known customer in the events", file=sys.stderr)
        return 1
    orders, _ = Orders.build(rows)
    results = []
    for cut in args.cut:
        try:
            results.append(evaluate_cut(orders, cut, args.horizon_days))
        except (NotEnoughHistory, ValueError) as exc:
            print(f"vitrine evaluate-customers: cut {customer_report.day(cut)}: {exc}", file=sys.stderr)
            return 1
    out = args.out / f"customers-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    paths = customer_report.write(results, str(args.dataset or events), out)
    for r in results:
        print()
        print(customer_report.cut_markdown(r).split("### Calibration")[0].rstrip())
    print(f"\nreport: {', '.join(str(p) for p in paths)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("evaluate-customers", help="measure the value and churn scores against recency, RFM and "
                                                  "BG/NBD on a time split")
    p.add_argument("--events", type=Path, help="events.csv in the `vitrine import` format")
    p.add_argument("--dataset", choices=["online-retail"], help="a named real dataset instead of a CSV file")
    p.add_argument("--cut", type=_day, action="append", required=True,
                   help="calibrate before this day (YYYY-MM-DD, UTC), hold out the horizon after it; repeatable")
    p.add_argument("--horizon-days", type=_days, default=90.0, help="holdout length (default 90)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="reports folder (default ./reports)")
    p.set_defaults(func=cmd_evaluate_customers)
