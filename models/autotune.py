"""Self-tuning at train time: the recipe ``vitrine train`` serves is tuned on the shop's own data.

The validation tail is the last ``share`` of the events (by count, so a quiet spell or a long
empty gap does not leave it empty); the recipe is trained on what comes before it and scored there
(models.tuning: ALS and event weights, what for-you leaves out, the blend). The protocol follows the
data: a log where most events come from people seen in more than one session is scored per
person (what they used after the cut, models.evaluate); a log of mostly one-session visitors is
scored per session (the next item at every step, models.session_protocol). Unless pinned, items
already seen or bought count as targets, so leaving them out has to earn its place.

Too little validation data (fewer than ``MIN_QUERIES`` people or steps) tunes nothing: the recipe
stays as configured, and the record says so.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tqdm import tqdm

from models.artifacts import Artifact
from models.evaluate import Protocol, Ranker, Split, score, time_split
from models.rows import Interaction, user_key
from models.session_protocol import session_split
from models.sessions import runs
from models.train import TrainConfig, fit
from models.tuning import OBJECTIVE, steps, tune

VALIDATION_SHARE = 0.1  # of the events
MAX_QUERIES = 1000  # people (or session steps) scored on validation, a seeded sample beyond
MIN_QUERIES = 20


@dataclass
class Tuned:
    config: TrainConfig
    record: dict[str, Any]  # what was tried and chosen, for the model's meta


def shape(rows: Sequence[Interaction], gap_s: float) -> str:
    """"sessions" when most events come from visitors seen in one session only, else "people"."""
    linked = {r.visitor_id: r.customer_id for r in rows if r.customer_id}
    sessions: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for session in runs(rows, gap_s):
        first = session[0]
        person = user_key(first.visitor_id, first.customer_id or linked.get(first.visitor_id))
        sessions[person] += 1
        events[person] += len(session)
    returning = sum(n for person, n in events.items() if sessions[person] > 1)
    return "people" if returning * 2 > sum(events.values()) else "sessions"


def validation_split(rows: Sequence[Interaction], config: TrainConfig, kind: str, share: float = VALIDATION_SHARE,
                     seed: int = 42) -> Split:
    """Scored on the last ``share`` of the events, trained on the rest."""
    rows = sorted(rows, key=lambda r: r.ts)
    cutoff = rows[min(int(len(rows) * (1 - share)), len(rows) - 1)].ts
    protocol = Protocol(test_span_s=rows[-1].ts - cutoff, ks=(20,), exclude_seen=bool(config.exclude_seen),
                        exclude_purchased=bool(config.exclude_purchased), max_people=MAX_QUERIES, seed=seed,
                        sessions=kind == "sessions", session_gap_s=config.session_gap_s)
    split = (session_split if protocol.sessions else time_split)(rows, cutoff, protocol, config.weights,
                                                                  end=rows[-1].ts)
    if len(split.queries) > MAX_QUERIES:  # a session holds many steps: the budget is in predictions
        keep = sorted(random.Random(seed).sample(range(len(split.queries)), MAX_QUERIES))
        split.queries, split.targets = [split.queries[i] for i in keep], [split.targets[i] for i in keep]
    return split


def tune_recipe(rows: Sequence[Interaction], base: TrainConfig, serve: Callable[[Artifact], Ranker],
                signals: Sequence[str], *, pinned: Collection[str], trials: int, seed: int = 42,
                progress: bool = True) -> Tuned:
    """``base`` tuned on the validation tail of ``rows``; what is in ``pinned`` (settings names,
    models.tuning.TUNABLE) keeps its value in ``base``."""
    started = time.perf_counter()
    if not rows:
        return Tuned(base, {"tuned": False, "reason": "no data"})
    kind = shape(rows, base.session_gap_s)
    base = replace(base, exclude_seen=bool(base.exclude_seen) if "exclude_seen" in pinned else False,
                   exclude_purchased=bool(base.exclude_purchased) if "exclude_purchased" in pinned else False)
    split = validation_split(rows, base, kind, seed=seed)
    record: dict[str, Any] = {"protocol": kind, "objective": f"{OBJECTIVE} on the last {VALIDATION_SHARE:.0%} "
                              "of the events", "validation": split.describe(), "pinned": sorted(pinned)}
    if len(split.queries) < MIN_QUERIES:
        return Tuned(replace(base, exclude_seen=None, exclude_purchased=None),
                     {**record, "tuned": False, "reason": f"fewer than {MIN_QUERIES} "
                      f"{'steps' if kind == 'sessions' else 'people'} to validate on: the recipe as configured"})
    with tqdm(total=steps(signals, trials), desc="tuning", unit="trial", file=sys.stderr,
              disable=not progress) as bar:
        configured = score(serve(fit(split.matrix(base), base)), split, (20,))[OBJECTIVE]
        bar.update()
        tuned, best, trials_by_stage = tune(split, base, serve, signals, trials=trials, seed=seed, pinned=pinned,
                                            tick=bar.update)
    if best < configured:  # the search is greedy: never serve worse than the configuration on validation
        tuned, best = base, configured
    record.update({
        "tuned": True,
        "configured_score": round(configured, 6),
        "tuned_score": round(best, 6),
        "trials": {stage: len(found) for stage, found in trials_by_stage.items()},
        "best_trials": {stage: asdict(max(found, key=lambda t: t.score)) for stage, found in trials_by_stage.items()},
        "seconds": round(time.perf_counter() - started, 1),
    })
    return Tuned(tuned, record)
