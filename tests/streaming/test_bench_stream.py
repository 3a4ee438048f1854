"""``vitrine bench-stream`` runs end to end (tiny sizes) and writes its report; the numbers
themselves are read from real runs, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streaming.devstack import ROOT
from tests.conftest import without_settings


def test_bench_stream_writes_a_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "api.cli", "bench-stream", "--samples", "5", "--events", "300",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=without_settings())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("stream-bench-*.json")).read_text())
    for mode in ("freshness_embedded_ms", "freshness_kafka_ms"):
        assert report[mode]["samples"] == 5 and report[mode]["p50"] > 0
    assert report["worker"]["events"] > 0 and report["applier_in_process"]["events_per_s"] > 0
    assert report["noop_agent"]["events"] == report["worker"]["events"] and report["noop_agent"]["events_per_s"] > 0
    assert report["two_workers"]["workers"] == 2 and report["two_workers"]["partitions"] == 2
    assert report["worker_to_noop"] == round(report["worker"]["events_per_s"] / report["noop_agent"]["events_per_s"], 2)
    assert next(tmp_path.glob("stream-bench-*.md")).read_text().startswith("# Stream benchmark")
