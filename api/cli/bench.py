"""`vitrine bench` (the serving numbers) and `vitrine bench-stream` (freshness and events/s):
the benchmarks of load_tests/, run on this machine."""

from __future__ import annotations

import argparse

from engine.settings import Settings
from load_tests.bench import BenchConfig, markdown, run, write_reports
from load_tests.bench_stream import run_bench
from load_tests.sessions import taobao_stream


def cmd_bench_stream(args: argparse.Namespace, settings: Settings) -> int:
    args.taobao = args.taobao or taobao_stream(settings)
    return run_bench(settings, samples=args.samples, events=args.events, out_dir=args.out, taobao=args.taobao)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    config = BenchConfig(seconds=args.seconds, connections=args.connections, workers=tuple(args.workers),
                         visitors=args.visitors, new_items=args.new_items, out_dir=args.out,
                         cluster=args.cluster)
    report = run(config)
    print(markdown(report))
    json_path, md_path = write_reports(report, args.out)
    print(f"reports: {json_path} {md_path}")
    return 0
