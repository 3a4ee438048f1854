"""Experiments and the control group: who gets what, and what it did.

Assignment is a pure function of (salt, visitor id) through a keyed hash, so every process and
every restart agrees without storing anything. The arm a response was built under travels in its
recommendation id (``<random>.<experiment>.<arm>``); impressions, clicks and purchases reported
with that id are counted per arm by ``engine.merch.exposure`` on the exactly-once apply path.

The report compares each arm with the control arm: relative lift ``m_arm / m_control - 1`` with a
95% confidence interval from the delta method on the log of the ratio,
``SE^2 = var_a / (n_a m_a^2) + var_c / (n_c m_c^2)``, where for a rate (CTR, conversion) the
variance is ``p (1 - p)`` and for revenue per visitor it comes from the per-visitor sums of
squares kept with the counters.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from engine.merch.schema import ControlGroup, Experiment, RulesFile, Window

CONTROL = "control"
HOLDOUT = "holdout"  # the control group's own report: control vs everyone personalised
PERSONALISED = "personalised"
METRICS = ("visitors", "impressions", "clicks", "conversions", "revenue", "revenue_sq")
Z95 = 1.959963984540054


def bucket(salt: str, visitor_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, visitor): the same everywhere, always."""
    digest = hashlib.blake2b(visitor_id.encode(), key=salt.encode()[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def in_control_group(group: ControlGroup | None, visitor_id: str | None) -> bool:
    return bool(group and visitor_id and group.share > 0 and bucket(group.salt, visitor_id) < group.share)


def variant_of(experiment_id: str, experiment: Experiment, visitor_id: str) -> str:
    u = bucket(experiment.salt or experiment_id, visitor_id)
    total = sum(v.weight for v in experiment.variants)
    edge = 0.0
    for v in experiment.variants:
        edge += v.weight / total
        if u < edge:
            return v.name
    return experiment.variants[-1].name


@dataclass(frozen=True)
class Arm:
    experiment: str | None = None
    name: str | None = None
    personalised: bool = True

    def recommendation_id(self) -> str:
        # Attributes clicks, guards nothing: a PRNG (reseeded in each forked worker) instead of
        # secrets, which makes a system call per id, on every recommendation.
        token = f"{random.getrandbits(64):016x}"
        return f"{token}.{self.experiment}.{self.name}" if self.experiment else token


NO_EXPERIMENT = Arm()  # most requests' arm: one shared instance, not a frozen dataclass built per request


# ---------------------------------------------------------------- report


def _lift(n_a: float, s_a: float, q_a: float, n_c: float, s_c: float, q_c: float) -> dict[str, Any] | None:
    """Relative lift of the mean of A over C with its 95% interval (None when undefined)."""
    if n_a <= 0 or n_c <= 0:
        return None
    m_a, m_c = s_a / n_a, s_c / n_c
    if m_c <= 0:
        return None
    out: dict[str, Any] = {"lift": m_a / m_c - 1, "ci95": None}
    if m_a > 0:
        var_a, var_c = max(q_a / n_a - m_a ** 2, 0.0), max(q_c / n_c - m_c ** 2, 0.0)
        se = math.sqrt(var_a / (n_a * m_a ** 2) + var_c / (n_c * m_c ** 2))
        log_ratio = math.log(m_a / m_c)
        out["ci95"] = [math.exp(log_ratio - Z95 * se) - 1, math.exp(log_ratio + Z95 * se) - 1]
    return out


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def report(experiment_id: str, arms: list[str], control: str, counters: dict[str, float]) -> dict[str, Any]:
    """Per-arm metrics and lift against ``control`` from the raw counters (``arm:metric``)."""
    rows: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, float]] = {}
    for arm in arms:
        c = {m: counters.get(f"{arm}:{m}", 0.0) for m in METRICS}
        raw[arm] = c
        v, i = c["visitors"], c["impressions"]
        rows[arm] = {
            "visitors": int(v),
            "impressions": int(i),
            "clicks": int(c["clicks"]),
            "conversions": int(c["conversions"]),
            "revenue": c["revenue"],
            "ctr": c["clicks"] / i if i else None,
            "conversion": c["conversions"] / v if v else None,
            "revenue_per_visitor": c["revenue"] / v if v else None,
        }
    ctl = raw.get(control)
    for arm in arms:
        if arm == control or ctl is None:
            continue
        a = raw[arm]
        rows[arm]["lift_vs_control"] = {
            "ctr": _lift(a["impressions"], a["clicks"], a["clicks"],
                         ctl["impressions"], ctl["clicks"], ctl["clicks"]),
            "conversion": _lift(a["visitors"], a["conversions"], a["conversions"],
                                ctl["visitors"], ctl["conversions"], ctl["conversions"]),
            "revenue_per_visitor": _lift(a["visitors"], a["revenue"], a["revenue_sq"],
                                         ctl["visitors"], ctl["revenue"], ctl["revenue_sq"]),
        }
    return _rounded({"experiment": experiment_id, "control": control, "arms": rows})


def report_for(experiment_id: str, rules: RulesFile, counters: dict[str, float], now: float) -> dict[str, Any] | None:
    """The report an admin asks for: the arms the rules name (or the control group's two sides),
    plus any arm that still has counters from earlier rules. None when neither rules nor counters
    know the experiment."""
    config = rules.experiments.get(experiment_id)
    if experiment_id == HOLDOUT:
        arms, control = [PERSONALISED], CONTROL
    elif config is not None:
        arms, control = [v.name for v in config.variants], config.control or CONTROL
    elif counters:
        arms, control = [], CONTROL
    else:
        return None
    seen = {member.rsplit(":", 1)[0] for member in counters}
    arms = list(dict.fromkeys([*arms, *sorted(seen), CONTROL]))
    result = report(experiment_id, arms, control, counters)
    if config is not None:
        result["placement"] = config.placement
        result["running"] = config.active(now)
        result["weights"] = {v.name: v.weight for v in config.variants}
    if rules.control_group is not None:
        result["control_group_share"] = rules.control_group.share
    return result


def status(window: Window, now: float) -> str:
    """``scheduled`` before its start, ``ended`` from its end, else ``running``."""
    if window.start is not None and now < window.start.timestamp():
        return "scheduled"
    if window.end is not None and now >= window.end.timestamp():
        return "ended"
    return "running"


def listing(rules: RulesFile, counters: dict[str, dict[str, float]], now: float) -> list[dict[str, Any]]:
    """Every experiment of the rules, and the control group (``holdout``) when the rules have one or
    it has data, each with its settings, status and report. ``counters``: per experiment id."""
    out = []
    for experiment_id, config in rules.experiments.items():
        out.append({
            "id": experiment_id, "placement": config.placement,
            "start": config.start.isoformat() if config.start else None,
            "end": config.end.isoformat() if config.end else None,
            "variants": [{"name": v.name, "weight": v.weight} for v in config.variants],
            "control": config.control or CONTROL, "status": status(config, now),
            "report": report_for(experiment_id, rules, counters.get(experiment_id, {}), now),
        })
    if rules.control_group is not None or counters.get(HOLDOUT):
        out.append({
            "id": HOLDOUT, "placement": None, "start": None, "end": None,
            "variants": [{"name": PERSONALISED, "weight": 1 - (rules.control_group.share if rules.control_group
                                                               else 0.0)}],
            "control": CONTROL, "status": "running" if rules.control_group is not None else "ended",
            "report": report_for(HOLDOUT, rules, counters.get(HOLDOUT, {}), now),
        })
    return out
