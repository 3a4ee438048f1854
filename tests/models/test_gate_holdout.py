"""The promotion gate compares models on recent people with a past, and refuses to promote blind."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from engine.catalog import EMPTY
from engine.profiles import ProfileConfig
from engine.training.offline import OfflineRanker
from models import artifacts
from models.als import ALSParams
from models.evaluate import Protocol
from models.rows import Interaction
from models.lifecycle import holdout_cutoff, train_and_gate
from models.train import TrainConfig

DAY = 86400.0
YEAR = 365 * DAY
WEIGHTS = {"product_view": 1.0, "purchase": 4.0}
GOOD = TrainConfig(weights=WEIGHTS, als=ALSParams(factors=8, iterations=5), blend={"history": 1.0, "neighbours": 1.0})
BAD = TrainConfig(weights=WEIGHTS, als=ALSParams(factors=2, iterations=2), blend={"popularity": 1.0})


def old_history_then_newcomers() -> list[Interaction]:
    """The demo's shape: years-old imported history of 60 people in two tastes (each returning to
    their own few items), then, years later, a few newcomers. The last 10% of the time span holds
    only the newcomers; the last 10% of the events holds the regulars' latest visits."""
    rnd = random.Random(3)
    rows = []
    for person in range(60):
        taste = "ab"[person % 2]
        own = [f"{taste}{rnd.randrange(30)}" for _ in range(4)]
        for day in range(20):
            for n in range(3):
                rows.append(Interaction(day * DAY + person * 60 + n, f"p{person}", None, "product_view",
                                        rnd.choice(own)))
    for person in range(5):
        rows.append(Interaction(10 * YEAR + person, f"new{person}", None, "product_view", "a1"))
    return rows


def gate(rows: list[Interaction], config: TrainConfig, models_dir: Path, **kwargs):  # noqa: ANN201
    serve = OfflineRanker(EMPTY, ProfileConfig(weights=WEIGHTS), exclude_seen=False, exclude_purchased=True)
    return train_and_gate(rows, config, models_dir, serve, protocol=Protocol(test_span_s=0, ks=(10, 20),
                          exclude_seen=False), holdout=0.1, tolerance=0.02, **kwargs)


def test_the_holdout_is_the_last_share_of_the_events_not_of_the_time_span() -> None:
    rows = sorted(old_history_then_newcomers(), key=lambda r: r.ts)
    cutoff = holdout_cutoff(rows, 0.1)
    held_out = [r for r in rows if r.ts >= cutoff]
    assert len(held_out) == pytest.approx(0.1 * len(rows), abs=2)
    assert any(r.visitor_id.startswith("p") for r in held_out)


def test_a_deliberately_bad_model_is_compared_on_people_with_history_and_kept_out(tmp_path: Path) -> None:
    rows = old_history_then_newcomers()
    good, decision = gate(rows, GOOD, tmp_path)
    assert decision.promoted and decision.holdout_queries >= 20
    bad, decision = gate(rows, BAD, tmp_path)
    assert not decision.promoted and decision.current_score is not None
    assert decision.new_score < decision.current_score and f"{decision.holdout_queries} held-out people" in decision.reason
    assert artifacts.current_version(tmp_path) == good.version
    forced, decision = gate(rows, BAD, tmp_path, force=True)
    assert decision.promoted and decision.forced and "--force" in decision.reason
    assert artifacts.current_version(tmp_path) == forced.version
    assert json.loads((tmp_path / forced.version / "meta.json").read_text())["promotion"]["forced"] is True


def test_too_few_people_to_compare_keeps_the_current_model_unless_forced(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    first, _ = gate(old_history_then_newcomers(), GOOD, tmp_path)
    few = [Interaction(float(t), f"v{t % 3}", None, "product_view", f"a{t % 7}") for t in range(40)]
    with caplog.at_level(logging.INFO, logger="models.lifecycle"):
        refused, decision = gate(few, BAD, tmp_path)
    assert not decision.promoted and decision.holdout_queries < 20
    assert "not enough held-out data" in decision.reason and "--force promotes anyway" in decision.reason
    assert f"{refused.version} NOT promoted: not enough held-out data" in caplog.text
    assert artifacts.current_version(tmp_path) == first.version
    forced, decision = gate(few, BAD, tmp_path, force=True)
    assert decision.promoted and decision.forced and "promoted because --force" in decision.reason
    assert artifacts.current_version(tmp_path) == forced.version
