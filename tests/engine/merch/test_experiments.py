"""Assignment (stable, split as configured) and the report's arithmetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.merch.experiments import bucket, in_control_group, report, variant_of
from engine.merch.schema import ControlGroup, Experiment

EXP = Experiment.model_validate({"placement": "home", "salt": "s1", "variants": [
    {"name": "a", "weight": 50}, {"name": "b", "weight": 30}, {"name": "c", "weight": 20}]})
VISITORS = [f"visitor-{i}" for i in range(20_000)]


def test_assignment_is_stable_across_processes() -> None:
    here = [variant_of("e1", EXP, v) for v in VISITORS[:200]]
    code = ("import sys; from engine.merch.experiments import variant_of; from tests.engine.merch.test_experiments import EXP, VISITORS;"
            "print(','.join(variant_of('e1', EXP, v) for v in VISITORS[:200]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=Path(__file__).parents[3])
    assert other.stdout.strip().split(",") == here


def test_split_follows_the_weights() -> None:
    counts = {"a": 0, "b": 0, "c": 0}
    for v in VISITORS:
        counts[variant_of("e1", EXP, v)] += 1
    # binomial sd at n=20000 is <= 0.0036: 4 sd
    assert counts["a"] / len(VISITORS) == pytest.approx(0.5, abs=0.015)
    assert counts["b"] / len(VISITORS) == pytest.approx(0.3, abs=0.015)
    assert counts["c"] / len(VISITORS) == pytest.approx(0.2, abs=0.015)


def test_salt_reshuffles_and_control_group_is_independent_of_experiments() -> None:
    other = EXP.model_copy(update={"salt": "s2"})
    changed = sum(variant_of("e1", EXP, v) != variant_of("e1", other, v) for v in VISITORS[:2000])
    assert 900 < changed < 1400  # ~ 1 - (.5^2 + .3^2 + .2^2) = 62% change arm
    group = ControlGroup(share=0.1)
    in_group = [v for v in VISITORS if in_control_group(group, v)]
    assert len(in_group) / len(VISITORS) == pytest.approx(0.1, abs=0.008)
    arms = {a: sum(variant_of("e1", EXP, v) == a for v in in_group) / len(in_group) for a in "abc"}
    assert arms["a"] == pytest.approx(0.5, abs=0.04)  # no correlation between the two hashes
    assert not in_control_group(ControlGroup(share=0), "visitor-1")
    assert all(0 <= bucket("s", v) < 1 for v in VISITORS[:100])


def test_report_arithmetic_against_a_hand_computed_case() -> None:
    counters = {
        # control: 100 visitors, 400 impressions, 20 clicks, 10 buyers of 50 each
        "control:visitors": 100, "control:impressions": 400, "control:clicks": 20,
        "control:conversions": 10, "control:revenue": 500, "control:revenue_sq": 10 * 50 ** 2,
        # b: 100 visitors, 400 impressions, 30 clicks, 15 buyers of 60 each
        "b:visitors": 100, "b:impressions": 400, "b:clicks": 30,
        "b:conversions": 15, "b:revenue": 900, "b:revenue_sq": 15 * 60 ** 2,
    }
    out = report("e1", ["b", "control"], "control", counters)
    b = out["arms"]["b"]
    assert (b["visitors"], b["impressions"], b["clicks"], b["conversions"]) == (100, 400, 30, 15)
    assert (b["ctr"], b["conversion"], b["revenue_per_visitor"]) == (0.075, 0.15, 9.0)
    assert out["arms"]["control"]["ctr"] == 0.05 and "lift_vs_control" not in out["arms"]["control"]
    # lift = m_b / m_c - 1; CI = exp(log ratio +- 1.96 SE) - 1, SE^2 = var_b/(n_b m_b^2) + var_c/(n_c m_c^2)
    # CTR: SE^2 = .925/30 + .95/20; conversion: .85/15 + .9/10; RPV: var 459 and 225 -> 459/8100 + 225/2500
    assert b["lift_vs_control"] == {
        "ctr": {"lift": 0.5, "ci95": [-0.133325, 1.596129]},
        "conversion": {"lift": 0.5, "ci95": [-0.291882, 2.177435]},
        "revenue_per_visitor": {"lift": 0.8, "ci95": [-0.150258, 2.812922]},
    }


def test_report_without_data_or_control_has_no_lift() -> None:
    out = report("e1", ["a", "control"], "control", {"a:visitors": 3, "a:impressions": 5, "a:clicks": 1})
    assert out["arms"]["a"]["lift_vs_control"] == {"ctr": None, "conversion": None, "revenue_per_visitor": None}
    assert out["arms"]["control"]["ctr"] is None
    no_buyers = report("e1", ["a", "control"], "control", {
        "a:visitors": 10, "control:visitors": 10, "control:conversions": 2, "control:revenue_sq": 2})
    assert no_buyers["arms"]["a"]["lift_vs_control"]["conversion"] == {"lift": -1.0, "ci95": None}
