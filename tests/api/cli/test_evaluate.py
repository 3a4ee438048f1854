"""`vitrine evaluate` end to end on a small slice of real data, the named datasets, and the
background retraining of embedded mode."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.events.log import EventLog
from engine.ingest.importer import ImportReport, read_events
from models import artifacts
from models.datasets import TAOBAO_HEAD, TAOBAO_WINDOW, write_taobao

ROOT = Path(__file__).resolve().parents[3]
VITRINE = [sys.executable, "-m", "api.cli"]
SHARED = Path(os.environ.get("VITRINE_SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))


def _slice(events: Path, out: Path, every: int) -> Path:
    """The demo orders of one customer in ``every`` (whole histories, so the split is real)."""
    with events.open() as src, out.open("w", newline="") as dst:
        reader, writer = csv.DictReader(src), csv.writer(dst)
        writer.writerow(reader.fieldnames)
        for row in reader:
            if row["customer_id"] and int(row["customer_id"]) % every == 0:
                writer.writerow(row.values())
    return out


def test_evaluate_prints_the_table_and_writes_the_report(tmp_path: Path, demo_files: tuple[Path, Path]) -> None:
    items, events = demo_files
    sliced = _slice(events, tmp_path / "events.csv", every=5)
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path / "data"), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(VITRINE + ["evaluate", "--events", str(sliced), "--items", str(items), "--test-days", "21",
                                       "--no-exclude-seen", "--no-exclude-purchased", "--trials", "2",
                                       "--train-trials", "2", "--max-people", "60", "--out", str(tmp_path / "reports")],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    methods = ["popularity", "trending", "item-kNN cosine", "item-kNN BM25", "ALS", "V-SKNN", "SR",
               "Vitrine (as configured)", "Vitrine (tuned)", "Vitrine (after train)"]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in table[1:]] == methods
    assert "ndcg@20" in table[0] and "coverage@10" in table[0]
    assert "vs best baseline" in result.stdout

    (run_dir,) = (tmp_path / "reports").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert list(report["methods"]) == methods
    for values in report["methods"].values():
        assert set(values) >= {f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit_rate", "coverage") for k in (10, 20)}
        assert all(0.0 <= v <= 1.0 for v in values.values())
    assert report["methods"]["Vitrine (tuned)"]["ndcg@20"] > report["methods"]["popularity"]["ndcg@20"]
    split = report["split"]
    assert split["validation"]["cutoff"] < split["test"]["cutoff"] == split["validation"]["end"]
    assert split["test"]["people_scored"] <= 60 and report["protocol"]["exclude_seen"] is False
    assert report["target"]["best_baseline"] in methods[:7] and report["served"] == "Vitrine (after train)"
    assert report["apply"]["VITRINE_EXCLUDE_PURCHASED"] == "false" and "VITRINE_BLEND" in report["apply"]
    tuning = json.loads((run_dir / "tuning.json").read_text())
    assert len(tuning["als"]) == 2 and len(tuning["blend"]) > 5 and tuning["exclusions"]
    markdown = (run_dir / "report.md").read_text()
    assert "| Vitrine (tuned) |" in markdown and "VITRINE_ALS_FACTORS=" in markdown
    for png in ("metrics_vs_k.png", "methods.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_session_protocol_predicts_every_next_step_of_anonymous_sessions(
        tmp_path: Path, demo_files: tuple[Path, Path]) -> None:
    items, events = demo_files
    sliced = _slice(events, tmp_path / "events.csv", every=4)
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path / "data"), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(VITRINE + ["evaluate", "--events", str(sliced), "--items", str(items), "--test-days", "14",
                                       "--protocol", "sessions", "--trials", "1", "--train-trials", "1",
                                       "--max-people", "25", "--no-progress", "--out", str(tmp_path / "reports")],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert run_dir.name.startswith("evaluate-events-sessions-")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["protocol"]["sessions"] and "V-SKNN" in report["methods"] and "SR" in report["methods"]
    assert report["target"]["mrr"]["metric"] == "mrr@20" and report["served"] == "Vitrine (after train)"
    test = report["split"]["test"]
    assert test["targets"] == test["people_scored"] > 0  # one target per prediction
    for values in report["methods"].values():
        assert values["recall@20"] == values["hit_rate@20"]  # one target: recall is the hit rate
    markdown = (run_dir / "report.md").read_text()
    assert "next step" in markdown and "MRR@20" in result.stdout


def test_evaluate_says_what_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path), "VITRINE_SHARED_DATA_DIR": str(tmp_path / "nowhere")}
    none = subprocess.run(VITRINE + ["evaluate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "--events" in none.stderr
    taobao = subprocess.run(VITRINE + ["evaluate", "--dataset", "taobao"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert taobao.returncode == 2 and "VITRINE_SHARED_DATA_DIR" in taobao.stderr
    bad = subprocess.run(VITRINE + ["evaluate", "--dataset", "online-retail", "--test-days", "0"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--test-days: must be > 0" in bad.stderr


@pytest.mark.skipif(not (SHARED / TAOBAO_HEAD).exists(),
                    reason=f"the Taobao data is not in {SHARED} (it is never committed); set VITRINE_SHARED_DATA_DIR")
def test_taobao_becomes_the_generic_import_format(tmp_path: Path) -> None:
    items, events = write_taobao(tmp_path, SHARED / TAOBAO_HEAD)
    with io.TextIOWrapper(gzip.open(SHARED / TAOBAO_HEAD, "rb"), encoding="utf-8") as fh:
        source = list(csv.DictReader(fh))
    inside = [r for r in source if TAOBAO_WINDOW[0] <= int(r["timestamp"]) < TAOBAO_WINDOW[1]]
    assert len(source) - len(inside) == 35  # the documented strays
    report = ImportReport()
    parsed = list(read_events(events, report, accepted_at=time.time()))
    assert report.error_count == 0 and report.loaded == len(inside)
    assert {e.type for e in parsed} == {"product_view", "add_to_cart", "add_to_wishlist", "purchase"}
    assert all(TAOBAO_WINDOW[0] <= e.ts < TAOBAO_WINDOW[1] for e in parsed)
    assert [e.ts for e in parsed] == sorted(e.ts for e in parsed)
    favourites = sum(r["behavior_type"] == "fav" for r in inside)
    assert sum(e.type == "add_to_wishlist" for e in parsed) == favourites
    with items.open() as fh:
        catalogue = list(csv.DictReader(fh))
    assert len(catalogue) == len({r["item_id"] for r in inside}) and all(i["category"] for i in catalogue)


def test_embedded_mode_retrains_in_the_background(tmp_path: Path, demo_files: tuple[Path, Path]) -> None:
    from api.cli.retrain import Retrainer

    log = EventLog(tmp_path / "log", fsync=False)
    events = list(read_events(demo_files[1], ImportReport(), accepted_at=time.time()))
    log.write(events[:3000])
    log.close()
    env = {**os.environ, "VITRINE_DATA_DIR": str(tmp_path), "OPENBLAS_NUM_THREADS": "1",
           "VITRINE_ALS_FACTORS": "8", "VITRINE_ALS_ITERATIONS": "3"}
    retrainer = Retrainer(0.2, env)
    retrainer.start()
    deadline = time.monotonic() + 120
    while retrainer.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    retrainer.stop()
    assert retrainer.runs >= 2
    versions = artifacts.versions(tmp_path / "models")
    assert len(versions) >= 2 and artifacts.current_version(tmp_path / "models") in versions
    second = json.loads((tmp_path / "models" / versions[1] / "meta.json").read_text())
    assert second["promotion"]["current_version"] == versions[0]  # the second run was gated against the first
