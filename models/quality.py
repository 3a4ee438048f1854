"""One `vitrine evaluate` run: tune on validation, then every method on the same test split.

The test period is the data's last ``test_span_s``; validation is the span before it. Tuning
(models.tuning) only ever sees the validation split; the tuned recipe is then retrained on all the
data before the test cut-off and compared, in the same run and on the same queries, with the
baselines (models.baselines), with the recipe as currently configured, and with what `vitrine
train` would serve if it were run at the test cut-off ("after train": it tunes itself on the tail
of that data, models.autotune; the run is handed it as a method, since it needs the engine).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tqdm import tqdm

from models.artifacts import Artifact
from models.baselines import baselines
from models.evaluate import Method, Protocol, Ranker, Scored, compare, served
from models.session_protocol import split_at_tail
from models.rows import Interaction
from models.metrics import bootstrap_ratio, per_person
from models.train import TrainConfig
from models.tuning import OBJECTIVE, steps, tune

log = logging.getLogger(__name__)

SERVED_TUNED = "Vitrine (tuned)"
SERVED_CONFIGURED = "Vitrine (as configured)"
SERVED_AFTER_TRAIN = "Vitrine (after train)"
GOAL = 1.10  # the served recommender's NDCG@20 over the best baseline's
SESSION_GOAL = 1.00  # ... and its MRR@20 over the best baseline's, on the session protocol


@dataclass(frozen=True)
class RunConfig:
    name: str
    protocol: Protocol
    base: TrainConfig  # the recipe as configured (settings)
    blend_signals: tuple[str, ...]
    trials: int = 20  # ALS / event-weight draws, the configured recipe included
    after_train: Method | None = None  # what `vitrine train` would serve, trained on the split's rows
    progress: bool = True


def run(rows: Sequence[Interaction], config: RunConfig, serve: Callable[[Artifact], Ranker]) -> dict[str, Any]:
    """The report as data: protocol, split, parameters, method -> metric -> value, tuning trials."""
    started = time.perf_counter()
    protocol = config.protocol
    validation, test = split_at_tail(rows, protocol, config.base.weights)
    if not validation.queries or not test.queries:
        raise ValueError(f"not enough data for a split: {len(validation.queries)} people to validate on and "
                         f"{len(test.queries)} to test on with a {protocol.test_span_s / 86400:g}-day test period")
    log.info("split: validation %s, test %s", validation.describe(), test.describe())

    log.info("tuning on validation (%d ALS / event-weight trials, then the blend)", config.trials)
    pinned = ("exclude_seen", "exclude_purchased")  # the protocol's: tuned for what it scores
    base = replace(config.base, exclude_seen=protocol.exclude_seen, exclude_purchased=protocol.exclude_purchased)
    with tqdm(total=steps(config.blend_signals, config.trials), desc="tuning on validation", unit="trial",
              file=sys.stderr, disable=not config.progress) as bar:
        tuned, _, trials = tune(validation, base, serve, config.blend_signals, trials=config.trials,
                                seed=protocol.seed, pinned=pinned, tick=bar.update)

    methods = baselines(tuned, trending_window_s=protocol.test_span_s)
    methods[SERVED_CONFIGURED] = served(config.base, serve)
    methods[SERVED_TUNED] = served(tuned, serve)
    if config.after_train is not None:
        methods[SERVED_AFTER_TRAIN] = config.after_train
    log.info("scoring %d methods on the test split", len(methods))
    scored: dict[str, Scored] = {}
    for name, method in tqdm(methods.items(), desc="scoring on test", unit="method", file=sys.stderr,
                             disable=not config.progress):
        scored.update(compare(test, {name: method}, protocol.ks))

    baseline_names = [name for name in methods if not name.startswith("Vitrine")]
    target_name = SERVED_AFTER_TRAIN if config.after_train is not None else SERVED_TUNED
    best = max(baseline_names, key=lambda name: scored[name].metrics[OBJECTIVE])
    best_value = scored[best].metrics[OBJECTIVE]
    served_value = scored[target_name].metrics[OBJECTIVE]
    ratio = served_value / best_value if best_value > 0 else None
    k = int(OBJECTIVE.split("@")[1])
    low, high = bootstrap_ratio(per_person(scored[target_name].ranked, test.targets, k)["ndcg"],
                                per_person(scored[best].ranked, test.targets, k)["ndcg"], protocol.seed)
    target: dict[str, Any] = {
        "metric": OBJECTIVE, "best_baseline": best, "best_baseline_value": best_value,
        "served_value": served_value, "ratio": ratio, "ratio_95ci": [low, high], "goal": GOAL,
        "met": ratio is not None and ratio >= GOAL}
    if protocol.sessions:
        mrr = f"mrr@{k}"
        best_mrr = max(baseline_names, key=lambda name: scored[name].metrics[mrr])
        mrr_ratio = (scored[target_name].metrics[mrr] / scored[best_mrr].metrics[mrr]
                     if scored[best_mrr].metrics[mrr] > 0 else None)
        target["mrr"] = {"metric": mrr, "best_baseline": best_mrr, "best_baseline_value": scored[best_mrr].metrics[mrr],
                         "served_value": scored[target_name].metrics[mrr], "ratio": mrr_ratio, "goal": SESSION_GOAL,
                         "met": mrr_ratio is not None and mrr_ratio >= SESSION_GOAL}
        target["met"] = target["met"] and target["mrr"]["met"]
    return {
        "dataset": config.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": {**asdict(protocol), "test_span_days": protocol.test_span_s / 86400,
                     "validation": "the same span just before the test period"},
        "split": {"validation": validation.describe(), "test": test.describe(),
                  "catalogue_items": test.catalogue_size},
        "params": {"configured": config.base.params(), "tuned": tuned.params(),
                   **({"after_train": chosen} if (chosen := getattr(config.after_train, "chosen", None)) else {})},
        "methods": {name: s.metrics for name, s in scored.items()},
        "timing_s": {name: {"fit": s.fit_s, "rank": s.rank_s} for name, s in scored.items()},
        "baselines": baseline_names,
        "served": target_name,
        "target": target,
        "tuning": {"objective": f"{OBJECTIVE} on validation",
                   **{stage: [asdict(t) for t in found] for stage, found in trials.items()}},
        "seconds": round(time.perf_counter() - started, 1),
    }
