"""``vitrine evaluate-customers``: the value and churn scores against recency, RFM and BG/NBD on a
time split (``models.customer_eval``), reported as Markdown, JSON and PNG plots."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from api.cli.common import print_report
from api.cli.quality import prepare_dataset
from engine.settings import Settings


def read_orders(events: Path) -> list[tuple[str, float, float]]:
    """(customer_id, time, revenue) of every purchase event of a known customer: one event is one
    order (the importer makes one event of an order's consecutive lines)."""
    from engine.ingest.importer import ImportReport, read_events  # noqa: PLC0415

    report = ImportReport()
    orders = [(e.customer_id, e.ts, e.order_revenue()) for e in read_events(events, report, accepted_at=time.time())
              if e.type == "purchase" and e.customer_id]
    print_report("event lines", events, report)
    return orders


def cmd_evaluate_customers(args: argparse.Namespace, settings: Settings) -> int:
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
