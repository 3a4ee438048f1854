"""One `vitrine evaluate` run: tune on validation, then every method on the same test split.

The test period is the data's last ``test_span_s``; validation is the span before it. Tuning
(models.tuning) only ever sees the validation split; the tuned recipe is then retrained on all the
data before the test cut-off and compared, in the same run and on the same queries, with the
baselines (models.baselines) and with the recipe as currently configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from models.artifacts import Artifact
from models.baselines import baselines
from models.evaluate import Protocol, Ranker, compare, served, split_at_tail
from models.interactions import Interaction
from models.metrics import bootstrap_ratio, per_person
from models.train import TrainConfig
from models.tuning import OBJECTIVE, tune_als, tune_blend

log = logging.getLogger(__name__)

SERVED_TUNED = "Vitrine (tuned)"
SERVED_CONFIGURED = "Vitrine (as configured)"
GOAL = 1.10  # the served blend's NDCG@20 over the best baseline's


@dataclass(frozen=True)
class RunConfig:
    name: str
    protocol: Protocol
    base: TrainConfig  # the recipe as configured (settings)
    blend_signals: tuple[str, ...]
    trials: int = 20  # ALS / event-weight draws, the configured recipe included


def run(rows: Sequence[Interaction], config: RunConfig, serve: Callable[[Artifact], Ranker]) -> dict[str, Any]:
    """The report as data: protocol, split, parameters, method -> metric -> value, tuning trials."""
    started = time.perf_counter()
    protocol = config.protocol
    validation, test = split_at_tail(rows, protocol, config.base.weights)
    if not validation.queries or not test.queries:
        raise ValueError(f"not enough data for a split: {len(validation.queries)} people to validate on and "
                         f"{len(test.queries)} to test on with a {protocol.test_span_s / 86400:g}-day test period")
    log.info("split: validation %s, test %s", validation.describe(), test.describe())

    log.info("tuning ALS and event weights on validation (%d trials)", config.trials)
    tuned, als_trials = tune_als(validation, config.base, config.trials, protocol.seed)
    log.info("tuning the blend on validation")
    tuned, blend_trials = tune_blend(validation, tuned, serve, config.blend_signals)

    methods = baselines(tuned, trending_window_s=protocol.test_span_s)
    methods[SERVED_CONFIGURED] = served(config.base, serve)
    methods[SERVED_TUNED] = served(tuned, serve)
    log.info("scoring %d methods on the test split", len(methods))
    scored = compare(test, methods, protocol.ks)

    baseline_names = [name for name in methods if not name.startswith("Vitrine")]
    best = max(baseline_names, key=lambda name: scored[name].metrics[OBJECTIVE])
    best_value = scored[best].metrics[OBJECTIVE]
    served_value = scored[SERVED_TUNED].metrics[OBJECTIVE]
    ratio = served_value / best_value if best_value > 0 else None
    k = int(OBJECTIVE.split("@")[1])
    low, high = bootstrap_ratio(per_person(scored[SERVED_TUNED].ranked, test.targets, k)["ndcg"],
                                per_person(scored[best].ranked, test.targets, k)["ndcg"], protocol.seed)
    return {
        "dataset": config.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": {**asdict(protocol), "test_span_days": protocol.test_span_s / 86400,
                     "validation": "the same span just before the test period"},
        "split": {"validation": validation.describe(), "test": test.describe(),
                  "catalogue_items": test.catalogue_size},
        "params": {"configured": config.base.params(), "tuned": tuned.params()},
        "methods": {name: s.metrics for name, s in scored.items()},
        "timing_s": {name: {"fit": s.fit_s, "rank": s.rank_s} for name, s in scored.items()},
        "baselines": baseline_names,
        "served": SERVED_TUNED,
        "target": {"metric": OBJECTIVE, "best_baseline": best, "best_baseline_value": best_value,
                   "served_value": served_value, "ratio": ratio, "ratio_95ci": [low, high], "goal": GOAL,
                   "met": ratio is not None and ratio >= GOAL},
        "tuning": {"objective": f"{OBJECTIVE} on validation",
                   "als": [asdict(t) for t in als_trials], "blend": [asdict(t) for t in blend_trials]},
        "seconds": round(time.perf_counter() - started, 1),
    }
