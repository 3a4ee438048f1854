"""Gated promotion: a new model replaces the served one only if it is not worse on held-out data.

`vitrine train` holds out the last ``holdout`` share of the events (by count, so a long quiet
span in the data, such as years-old imported history, cannot leave it holding only newcomers),
trains the new recipe on what comes before and scores it there (NDCG@20 of the served
recommender): on the people active in the hold-out who have history before it (models.evaluate),
or, with the session protocol, at every step of the held-out sessions (models.session_protocol).
The current model is scored on the same queries: as it is, when its own data ended before the
hold-out (then it never saw it); otherwise its recipe (the parameters in its meta) is retrained on
the same rows, so neither side has seen the answers. The new recipe is then trained on all the
data and saved; it is promoted unless it scored more than ``tolerance`` (relative) below the
current one. Fewer than ``MIN_PEOPLE`` queries cannot decide: the new model is then not promoted
over a current one unless forced. Both scores and the decision go to the log and to the
artifact's meta.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models import artifacts
from models.als import ALSParams
from models.artifacts import Artifact
from models.evaluate import Protocol, Ranker, Split, score, time_split
from models.rows import Interaction
from models.session_protocol import session_split
from models.seqrules import RuleParams
from models.sknn import SknnParams
from models.train import TrainConfig, fit

log = logging.getLogger(__name__)
METRIC = "ndcg@20"
MIN_PEOPLE = 20  # fewer held-out queries than this is noise, not evidence: no promotion over a model


@dataclass
class Decision:
    promoted: bool
    reason: str
    holdout_from: float | None = None
    new_score: float | None = None
    current_version: str | None = None
    current_score: float | None = None
    current_scored_as: str | None = None  # "served artifact" or "recipe retrained"
    holdout_queries: int = 0  # people (or session steps) the hold-out scores
    forced: bool = False


def recipe_of(meta: dict[str, Any], fallback: TrainConfig) -> TrainConfig:
    """The TrainConfig an artifact was trained with (fallback values for what it does not record)."""
    params = meta.get("params") or {}
    als = params.get("als")
    return TrainConfig(
        weights=params.get("event_weights") or fallback.weights,
        als=ALSParams(**{k: v for k, v in als.items() if k in ALSParams.__dataclass_fields__}) if als else fallback.als,
        neighbours=int(params.get("neighbours") or fallback.neighbours),
        similarity=str(params.get("similarity") or fallback.similarity),
        popularity_half_life_s=float(params.get("popularity_half_life_s") or fallback.popularity_half_life_s),
        history_half_life_s=float(params.get("history_half_life_s") or fallback.history_half_life_s),
        blend=params.get("blend") or {"als": 1.0},
        session_gap_s=float(params.get("session_gap_s") or fallback.session_gap_s),
        sknn=_known(SknnParams, params.get("sknn")) or fallback.sknn,
        rules=_known(RuleParams, params.get("rules")) or fallback.rules,
        exclude_seen=params.get("exclude_seen"),
        exclude_purchased=params.get("exclude_purchased"),
    )


def _known(cls: Any, values: dict[str, Any] | None) -> Any:
    return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__}) if values else None


def holdout_cutoff(rows: list[Interaction], holdout: float) -> float:
    """Where the held-out tail of ``rows`` (sorted by time) begins: the last ``holdout`` share of
    the events."""
    return rows[min(int(len(rows) * (1 - holdout)), len(rows) - 1)].ts


def _holdout_split(rows: list[Interaction], holdout: float, protocol: Protocol,
                   weights: dict[str, float]) -> Split | None:
    """The hold-out's queries; None when no event comes before the cut."""
    cutoff = holdout_cutoff(rows, holdout)
    if rows[0].ts >= cutoff:
        return None
    return (session_split if protocol.sessions else time_split)(rows, cutoff, protocol, weights, end=rows[-1].ts)


def _too_few(split: Split | None, protocol: Protocol) -> str:
    found = len(split.queries) if split is not None else 0
    what = "session steps" if protocol.sessions else "held-out people with history before the cut"
    return f"not enough held-out data to compare models ({found} {what}, fewer than {MIN_PEOPLE})"


def train_and_gate(rows: Iterable[Interaction], config: TrainConfig, models_dir: Path,
                   serve: Callable[[Artifact], Ranker], *, protocol: Protocol, holdout: float,
                   tolerance: float, keep: int | None = None,
                   tuning: dict[str, Any] | None = None, force: bool = False) -> tuple[Artifact, Decision]:
    """``keep``: after a promotion, delete all but the newest ``keep`` versions (never the served
    one, nor the one it replaced); None keeps them all. ``tuning``: how ``config`` was chosen
    (models.autotune), kept in the new model's meta. ``force``: promote whatever the comparison
    says, or when it cannot be made (the decision records it)."""
    read_at = time.time()  # every event accepted before this is in what is read now
    rows = sorted(rows, key=lambda r: r.ts)
    if not any(config.weights.get(r.event_type, 0.0) > 0 for r in rows):
        raise ValueError("no interactions to train on: import or send some events first")
    split = _holdout_split(rows, holdout, protocol, dict(config.weights))
    current = artifacts.current_version(models_dir)
    metrics: dict[str, float] = {}
    if split is None or len(split.queries) < MIN_PEOPLE:
        decision = Decision(current is None or force, _too_few(split, protocol),
                            holdout_queries=len(split.queries) if split is not None else 0,
                            current_version=current, forced=force and current is not None)
        decision.reason += ("; no current model to keep" if current is None else
                            "; promoted because --force" if force else "; --force promotes anyway")
    else:
        metrics = score(serve(fit(split.matrix(config), config)), split, (10, 20))
        decision = Decision(True, "no current model", split.cutoff, metrics[METRIC],
                            holdout_queries=len(split.queries))
        if current is not None:
            served = artifacts.load(models_dir / current)
            decision.current_version = current
            if float(served.meta.get("data", {}).get("last_event", float("inf"))) < split.cutoff:
                decision.current_scored_as = "served artifact"
            else:
                recipe = recipe_of(served.meta, config)
                served = fit(split.matrix(recipe), recipe)
                decision.current_scored_as = "recipe retrained"
            decision.current_score = score(serve(served), split, (20,))[METRIC]
            floor = decision.current_score * (1 - tolerance)
            decision.promoted = decision.new_score >= floor
            decision.reason = (f"{METRIC} {decision.new_score:.4f} vs current {decision.current_score:.4f} "
                               f"({decision.current_scored_as}) on {len(split.queries)} held-out "
                               f"{'session steps' if protocol.sessions else 'people'}; promoted when >= {floor:.4f}")
            if force and not decision.promoted:
                decision.promoted = decision.forced = True
                decision.reason += "; promoted because --force"
    artifact = fit(config.matrix(rows), config)
    artifact.meta["data"]["read_at"] = read_at
    artifact.meta["metrics"] = {f"holdout_{k}": round(v, 6) for k, v in metrics.items()}
    artifact.meta["promotion"] = asdict(decision)
    if tuning is not None:
        artifact.meta["tuning"] = tuning
    path = artifacts.save(artifact, models_dir)
    if decision.promoted:
        artifacts.promote(models_dir, path.name)
    log.info("model %s %s: %s", artifact.version, "promoted" if decision.promoted else "NOT promoted",
             decision.reason)
    if decision.promoted and keep is not None:
        removed = artifacts.prune(models_dir, keep, protect=[current] if current else [])
        if removed:
            log.info("deleted %d old model versions: %s", len(removed), ", ".join(removed))
    return artifact, decision
