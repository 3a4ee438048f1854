"""Gated promotion: a new model replaces the served one only if it is not worse on held-out data."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from engine.catalog import EMPTY
from engine.training.offline import OfflineRanker
from engine.profiles.shapes import ProfileConfig
from models import artifacts
from models.als import ALSParams
from models.evaluate import Protocol
from models.rows import Interaction
from models.lifecycle import train_and_gate
from models.train import TrainConfig

DAY = 86400.0
WEIGHTS = {"product_view": 1.0, "purchase": 4.0}


def shop(days: int = 10) -> list[Interaction]:
    """60 people in two tastes, each browsing items of their own taste every day."""
    rnd = random.Random(7)
    rows = []
    for person in range(60):
        taste = "ab"[person % 2]
        for day in range(days):
            for n in range(3):
                item = f"{taste}{rnd.randrange(15)}"
                rows.append(Interaction(day * DAY + person * 60 + n, f"p{person}", None, "product_view", item))
    return rows


GOOD = TrainConfig(weights=WEIGHTS, als=ALSParams(factors=8, iterations=5), blend={"als": 1.0, "neighbours": 1.0})
BAD = TrainConfig(weights=WEIGHTS, als=ALSParams(factors=8, iterations=5), blend={"popularity": 1.0})


def gate(rows: list[Interaction], config: TrainConfig, models_dir: Path, keep: int | None = None):  # noqa: ANN201
    serve = OfflineRanker(EMPTY, ProfileConfig(weights=WEIGHTS), exclude_seen=True, exclude_purchased=True)
    return train_and_gate(rows, config, models_dir, serve, protocol=Protocol(test_span_s=0, ks=(10, 20)),
                          holdout=0.2, tolerance=0.02, keep=keep)


def test_a_worse_model_is_kept_out_and_both_scores_are_recorded(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    rows = shop()
    first, decision = gate(rows, GOOD, tmp_path)
    assert decision.promoted and decision.reason == "no current model"
    assert artifacts.current_version(tmp_path) == first.version
    meta = json.loads((tmp_path / first.version / "meta.json").read_text())
    assert meta["metrics"]["holdout_ndcg@20"] == pytest.approx(decision.new_score, abs=1e-6) and decision.new_score > 0
    assert meta["data"]["first_event"] == rows[0].ts and meta["data"]["last_event"] == max(r.ts for r in rows)
    assert meta["params"]["blend"] == GOOD.blend and meta["params"]["als"]["factors"] == 8

    with caplog.at_level(logging.INFO, logger="models.lifecycle"):
        worse, decision = gate(rows, BAD, tmp_path)
    assert not decision.promoted
    assert decision.current_version == first.version and decision.current_scored_as == "recipe retrained"
    assert decision.new_score < decision.current_score * 0.98
    assert artifacts.current_version(tmp_path) == first.version  # still serving the good one
    assert worse.version in artifacts.versions(tmp_path)  # kept for inspection, not served
    assert f"{worse.version} NOT promoted" in caplog.text and f"{decision.current_score:.4f}" in caplog.text
    assert json.loads((tmp_path / worse.version / "meta.json").read_text())["promotion"]["promoted"] is False


def test_a_model_that_never_saw_the_holdout_is_scored_as_served(tmp_path: Path) -> None:
    rows = shop()
    early = [r for r in rows if r.ts < 7 * DAY]  # ends before the hold-out of the full data (last 20%)
    old, _ = gate(early, GOOD, tmp_path)
    new, decision = gate(rows, GOOD, tmp_path)
    assert decision.current_version == old.version and decision.current_scored_as == "served artifact"
    assert decision.promoted == (decision.new_score >= decision.current_score * 0.98)
    assert artifacts.current_version(tmp_path) == (new.version if decision.promoted else old.version)


def test_too_little_data_to_compare_still_trains_a_first_model(tmp_path: Path) -> None:
    rows = [Interaction(0.0, "v", None, "product_view", "a"), Interaction(1.0, "v", None, "purchase", "b")]
    artifact, decision = gate(rows, GOOD, tmp_path)
    assert decision.promoted and "not enough held-out data" in decision.reason and "no current model" in decision.reason
    assert artifacts.current_version(tmp_path) == artifact.version
    with pytest.raises(ValueError, match="no interactions"):
        gate([Interaction(0.0, "v", None, "search", "a")], GOOD, tmp_path / "empty")


def test_a_promotion_deletes_all_but_the_newest_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = iter(f"20260101T00000{n}Z-00000{n}" for n in range(10))  # one second apart: their order is known
    monkeypatch.setattr(artifacts, "new_version", lambda: next(names))
    rows = shop(days=6)
    first, _ = gate(rows, GOOD, tmp_path, keep=1)
    worse, decision = gate(rows, BAD, tmp_path, keep=1)
    assert not decision.promoted
    assert artifacts.versions(tmp_path) == [first.version, worse.version]  # no promotion, nothing deleted
    third, decision = gate(rows, GOOD, tmp_path, keep=1)
    assert decision.promoted
    # the rejected one goes; the one third replaced stays as the roll-back target
    assert artifacts.versions(tmp_path) == [first.version, third.version]
    assert artifacts.current_version(tmp_path) == third.version
    fourth, decision = gate(rows, GOOD, tmp_path, keep=1)
    assert decision.promoted and artifacts.versions(tmp_path) == [third.version, fourth.version]
