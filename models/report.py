"""An evaluation run as files: ``report.json`` (method -> metric -> value, plus the split and the
parameters), ``tuning.json`` (every trial), ``report.md`` and two PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from models.metrics import METRICS, metric_name  # noqa: E402

TABLE_KS = (10, 20)


def _k_values(report: dict[str, Any]) -> list[int]:
    return list(report["protocol"]["ks"])


def table(report: dict[str, Any]) -> str:
    """The comparison as a markdown table, best value of each column in bold."""
    columns = [metric_name(m, k) for k in TABLE_KS for m in METRICS]
    methods = report["methods"]
    best = {c: max(values[c] for values in methods.values()) for c in columns}
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, values in methods.items():
        cells = [f"**{values[c]:.4f}**" if values[c] == best[c] and best[c] > 0 else f"{values[c]:.4f}"
                 for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_line(report: dict[str, Any]) -> str:
    t = report["target"]
    ratio = (f"{t['ratio']:.3f}x (95% bootstrap interval over people {t['ratio_95ci'][0]:.2f}-"
             f"{t['ratio_95ci'][1]:.2f})" if t["ratio"] is not None else "n/a (the best baseline scored 0)")
    verdict = "met" if t["ratio"] is not None and t["ratio"] >= t["goal"] else "NOT met"
    line = (f"{report['served']} {t['metric']} = {t['served_value']:.4f} vs best baseline ({t['best_baseline']}) "
            f"{t['best_baseline_value']:.4f}: {ratio} (goal {t['goal']:.2f}x: {verdict})")
    if "mrr" in t:
        m = t["mrr"]
        ratio = f"{m['ratio']:.3f}x" if m["ratio"] is not None else "n/a"
        line += (f"; MRR@20 = {m['served_value']:.4f} vs best baseline ({m['best_baseline']}) "
                 f"{m['best_baseline_value']:.4f}: {ratio} (goal {m['goal']:.2f}x: {'met' if m['met'] else 'NOT met'})")
    return line


def _protocol_lines(p: dict[str, Any], split: dict[str, Any]) -> list[str]:
    if p.get("sessions"):
        sample = "" if p["max_people"] is None else f", a sample of {p['max_people']} sessions"
        test = split["test"]
        return [
            f"- Session-based protocol: the log cut into sessions ({p['session_gap_s'] / 60:g} minutes idle), each "
            "an anonymous visitor; test = the sessions that ended in the last "
            f"{p['test_span_days']:g} day(s), from {test['cutoff']} to {test['end']}; training = every session that "
            "ended before.",
            f"- Validation (all tuning): the sessions that ended in the {p['test_span_days']:g} day(s) before the test "
            "cut-off; the test period is never used for tuning.",
            "- In a held-out session, items unknown to training are left out and consecutive events on one item are "
            "one step; at each step after the first, every method ranks from the session so far, and the target is "
            "the next step's item (HR@20 = hit_rate@20 and MRR@20 as session-rec and SR-GNN report them, averaged "
            "over all predictions).",
            f"- Full ranking over the {split['catalogue_items']} items seen in training; left out of every ranking "
            f"(and a step whose item is left out is not scored): the cart"
            f"{', items already bought' if p['exclude_purchased'] else ''}"
            f"{', items already seen' if p['exclude_seen'] else ''}.",
            f"- Predictions scored: {test['people_scored']} in {test['people_active_after_cutoff']} held-out sessions "
            f"({test['people_without_history']} with fewer than two known steps, {test['people_with_nothing_new']} "
            f"steps to a left-out item); seed {p['seed']}{sample}.",
        ]
    sample = "" if p["max_people"] is None else f", a sample of {p['max_people']} people"
    return [
        f"- Time-based split: test = the last {p['test_span_days']:g} day(s), from {split['test']['cutoff']} to "
        f"{split['test']['end']}; training = every event before {split['test']['cutoff']}.",
        f"- Validation (all tuning): the {p['test_span_days']:g} day(s) before the test cut-off, cut at "
        f"{split['validation']['cutoff']}; the test period is never used for tuning.",
        "- Each person active after the cut-off with a history before it is asked for a ranking at the "
        "cut-off from that history; targets are the distinct items they used afterwards "
        f"(event types: {', '.join(p['target_types']) if p['target_types'] else 'all trained types'}).",
        f"- Full ranking over the {split['catalogue_items']} items seen in training (no sampled negatives); "
        f"left out of every ranking and of the targets: the cart"
        f"{', items already bought' if p['exclude_purchased'] else ''}"
        f"{', items already seen' if p['exclude_seen'] else ''} (as the served for-you list does with these "
        "settings).",
        *([f"- Session so far: each person's first {p['reveal']} event(s) after the cut-off are given too (the "
           "served recommender folds them into the profile as live events, the baselines add them to the "
           "person's row); the ranking is asked right after them and the targets are what came next."]
          if p["reveal"] else []),
        f"- People scored: {split['test']['people_scored']} of {split['test']['people_active_after_cutoff']} active "
        f"({split['test']['people_without_history']} with nothing to go on, {split['test']['people_with_nothing_new']} "
        "with only excluded items afterwards); seed "
        f"{p['seed']}{sample}.",
    ]


def markdown(report: dict[str, Any]) -> str:
    p, split = report["protocol"], report["split"]
    tuned = report["params"]["tuned"]
    lines = [
        f"# Recommendation quality: {report['dataset']}",
        "",
        f"Run {report['created_at']} in {report['seconds']} s.",
        "",
        "## Protocol",
        "",
        *_protocol_lines(p, split),
        "",
        "## Results (test split)",
        "",
        table(report),
        "",
        target_line(report),
        "",
        "![metric vs k](metrics_vs_k.png)",
        "![per method](methods.png)",
        "",
        "## Parameters",
        "",
        f"- Tuned on validation (objective {report['tuning']['objective']}; "
        f"{len(report['tuning']['als'])} ALS/event-weight trials, {len(report['tuning']['blend'])} blend trials; "
        "all in tuning.json):",
        f"  - ALS: {json.dumps(tuned['als'])}",
        f"  - event weights: {json.dumps(tuned['event_weights'])}",
        f"  - blend: {json.dumps(tuned['blend'])}",
        f"  - history half-life: {tuned['history_half_life_s'] / 86400:g} days",
        f"- As configured: {json.dumps(report['params']['configured'])}",
    ]
    after = report["params"].get("after_train")
    if after:
        tuning = after["tuning"] or {"tuned": False, "reason": "tuning is off (0 trials)"}
        how = (f"tuned by `vitrine train` on the {tuning['protocol']} protocol, validation NDCG@20 "
               f"{tuning['configured_score']:.4f} as configured -> {tuning['tuned_score']:.4f}"
               if tuning["tuned"] else f"not tuned: {tuning['reason']}")
        lines += [f"- After train ({how}): blend {json.dumps(after['params']['blend'])}, ALS "
                  f"{json.dumps(after['params']['als'])}, event weights {json.dumps(after['params']['event_weights'])}, "
                  f"exclude_seen {after['params']['exclude_seen']}, exclude_purchased "
                  f"{after['params']['exclude_purchased']}"]
    if report.get("apply"):
        lines += ["", "To serve the tuned recipe, set:", "", "```",
                  *[f"{k}={v}" for k, v in report["apply"].items()], "```"]
    lines += ["", "## Time per method (s)", "", "| method | fit | rank all |", "|---|---:|---:|"]
    lines += [f"| {name} | {t['fit']} | {t['rank']} |" for name, t in report["timing_s"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], out_dir: Path) -> list[Path]:
    ks = _k_values(report)
    methods = report["methods"]
    curves = [m for m in METRICS if m != "coverage"] + ["coverage"]
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.6))
    for ax, metric in zip(axes, curves):
        for name, values in methods.items():
            ax.plot(ks, [values[metric_name(metric, k)] for k in ks], marker="o", label=name,
                    linewidth=2.5 if name == report["served"] else 1.2)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    vs_k = _save(fig, axes, f"{report['dataset']}: metric vs k (test split)", out_dir / "metrics_vs_k.png")

    names = list(methods)
    fig, axes = plt.subplots(1, len(TABLE_KS), figsize=(7 * len(TABLE_KS), 4))
    width = 0.8 / len(names)
    for ax, k in zip(axes, TABLE_KS):
        for n, name in enumerate(names):
            values = [methods[name][metric_name(m, k)] for m in METRICS]
            ax.bar([i + n * width for i in range(len(METRICS))], values, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(METRICS))], [f"{m}@{k}" for m in METRICS])
        ax.grid(axis="y", alpha=0.3)
    bars = _save(fig, axes, f"{report['dataset']}: methods side by side (test split)", out_dir / "methods.png")
    return [vs_k, bars]


def _save(fig: Any, axes: Any, title: str, path: Path) -> Path:
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the run's files into ``out_dir`` (created); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in report.items() if k != "tuning"}
    paths = [out_dir / "report.json", out_dir / "tuning.json", out_dir / "report.md"]
    paths[0].write_text(json.dumps(summary, indent=2))
    paths[1].write_text(json.dumps(report["tuning"], indent=2))
    paths[2].write_text(markdown(report))
    return paths + plot(report, out_dir)
