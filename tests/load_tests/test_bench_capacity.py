"""The capacity bench on a small shop against a real redis-server: each per-unit cost is there and
plausible (the figures themselves are measured, in load_tests/capacity.md)."""

from __future__ import annotations

from pathlib import Path

from load_tests.bench_capacity import run


def test_the_capacity_figures_come_from_redis_itself(trained_models: Path) -> None:
    report = run(visitors=60, models_dir=trained_models)
    assert report["items"] > 1000 and report["visitors"] == 60 and report["events"] > 60
    assert 50 < report["bytes_per_item"] < 5000
    assert 100 < report["bytes_per_visitor"] < 20000
    # One MGET reads a person (engine.store.reads); applying goes through the scripts.
    reco = report["commands_per_recommendation"]
    assert reco["mget"] >= 1 and reco["total"] < 20
    assert report["commands_per_event_alone"]["total"] > report["commands_per_event_batched"]["total"] > 0
