"""The offline protocol: one time-based split, every method scored on it the same way.

Train on the events before a cut-off T. For each person active after T who has a history before
it, every method ranks the full catalogue at time T from that history alone; the ranking is
compared with the items the person went on to use after T. With ``reveal`` = n (the session so
far), each person's first n events after T are given too, the ranking is asked right after the
last of them, and the targets are what came next: newcomers are scored from those events alone. Items a scenario never shows in
production (the cart, and by setting what was already bought or seen) are left out of every
method's ranking and out of the targets, so no method is credited for an item production would
hide, nor blamed for one nobody could show. People are taken in sorted order and every model has a
fixed seed, so a run is repeatable.

Methods are plain callables (``Method``: training data -> ``Ranker``); the served recommender
comes in as one of them from the engine (see ``engine/training/``), since models/ must not import it.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from models.artifacts import Artifact
from models.interactions import InteractionMatrix
from models.rows import Interaction, user_key
from models.metrics import ranking_metrics
from models.train import TrainConfig, fit


@dataclass(frozen=True)
class Protocol:
    test_span_s: float  # the test period: the last this-many seconds of the data
    ks: tuple[int, ...] = (1, 5, 10, 20, 50)
    exclude_seen: bool = True
    exclude_purchased: bool = True
    target_types: tuple[str, ...] | None = None  # None: every type with a positive training weight
    max_people: int | None = None  # a seeded sample of the people, for very large exports
    seed: int = 42
    reveal: int = 0  # events after the cut-off given as the session so far
    sessions: bool = False  # the session-based protocol instead (models.session_protocol)
    session_gap_s: float = 1800.0  # idle time that ends a session

    @property
    def depth(self) -> int:
        return max(self.ks)


@dataclass(frozen=True)
class Query:
    """What a method knows when it ranks for one person: their history up to ``now``."""

    person: str  # the training matrix's key: c:<customer> or v:<visitor>
    visitor_id: str
    customer_id: str | None
    history: tuple[Interaction, ...]  # in time order
    now: float
    k: int
    exclude: frozenset[str]
    revealed: int = 0  # how many of the history's rows are after the cut-off (not in any training row)


Ranker = Callable[[Query], list[str]]


@dataclass
class Split:
    cutoff: float
    end: float
    train: list[Interaction]
    queries: list[Query]
    targets: list[set[str]]
    active: int  # people with a target event after the cut-off
    cold: int  # ... of which had nothing to go on (not scored: every method can only guess)
    nothing_new: int  # ... of which used only excluded items afterwards (not scored)
    _matrices: dict[tuple[Any, ...], InteractionMatrix] = field(default_factory=dict, repr=False)

    def matrix(self, config: TrainConfig) -> InteractionMatrix:
        """The training matrix for these event weights (built once per split and weights)."""
        key = (tuple(sorted(config.weights.items())), config.popularity_half_life_s, config.history_half_life_s)
        if key not in self._matrices:
            self._matrices[key] = config.matrix(self.train)
        return self._matrices[key]

    @cached_property
    def catalogue_size(self) -> int:
        """Items any method could rank: those seen in training (coverage is relative to them)."""
        return len({r.item_id for r in self.train})

    def describe(self) -> dict[str, Any]:
        return {
            "cutoff": _iso(self.cutoff),
            "end": _iso(self.end),
            "train_events": len(self.train),
            "first_event": _iso(self.train[0].ts) if self.train else None,
            "people_scored": len(self.queries),
            "people_active_after_cutoff": self.active,
            "people_without_history": self.cold,
            "people_with_nothing_new": self.nothing_new,
            "targets": sum(len(t) for t in self.targets),
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def exclusions(history: Sequence[Interaction], protocol: Protocol) -> set[str]:
    """What production never shows this person at the end of ``history`` (see engine.ranking.scenarios
    ``base_exclusions`` and ``for_you``): the cart, and by setting what they bought or touched."""
    cart: set[str] = set()
    bought: set[str] = set()
    seen: set[str] = set()
    for r in history:
        seen.add(r.item_id)
        if r.event_type == "add_to_cart":
            cart.add(r.item_id)
        elif r.event_type == "remove_from_cart":
            cart.discard(r.item_id)
        elif r.event_type == "purchase":
            bought.add(r.item_id)
            cart.discard(r.item_id)
    out = cart
    if protocol.exclude_purchased:
        out |= bought
    if protocol.exclude_seen:
        out |= seen
    return out


def time_split(rows: Sequence[Interaction], cutoff: float, protocol: Protocol,
               weights: Mapping[str, float], *, end: float | None = None) -> Split:
    """Queries at ``cutoff`` for the people active in [cutoff, end], from their earlier rows."""
    rows = sorted(rows, key=lambda r: r.ts)
    if end is None:
        end = rows[-1].ts if rows else cutoff
    train = [r for r in rows if r.ts < cutoff]
    linked: dict[str, str] = {}
    for r in train:
        if r.customer_id:
            linked.setdefault(r.visitor_id, r.customer_id)

    def person(r: Interaction) -> str:
        return user_key(r.visitor_id, r.customer_id or linked.get(r.visitor_id))

    history: dict[str, list[Interaction]] = defaultdict(list)
    for r in train:
        history[person(r)].append(r)
    target_types = set(protocol.target_types or (t for t, w in weights.items() if w > 0))
    after: dict[str, list[Interaction]] = defaultdict(list)
    for r in rows:
        if cutoff <= r.ts <= end:
            after[person(r)].append(r)

    people = sorted(p for p, later in after.items() if any(r.event_type in target_types for r in later))
    cold = nothing_new = 0
    queries: list[Query] = []
    targets: list[set[str]] = []
    for p in people:
        shown, later = after[p][:protocol.reveal], after[p][protocol.reveal:]
        past = history.get(p, []) + shown
        if not any(weights.get(r.event_type, 0.0) > 0 for r in past):
            cold += 1
            continue
        exclude = exclusions(past, protocol)
        wanted = {r.item_id for r in later if r.event_type in target_types} - exclude
        if not wanted:
            nothing_new += 1
            continue
        customer = p[2:] if p.startswith("c:") else None
        queries.append(Query(p, past[-1].visitor_id, customer, tuple(past), shown[-1].ts if shown else cutoff,
                             protocol.depth, frozenset(exclude), len(shown)))
        targets.append(wanted)
    if protocol.max_people is not None and len(queries) > protocol.max_people:
        keep = sorted(random.Random(protocol.seed).sample(range(len(queries)), protocol.max_people))
        queries, targets = [queries[i] for i in keep], [targets[i] for i in keep]
    return Split(cutoff, end, train, queries, targets, len(people), cold, nothing_new)


# ---------------------------------------------------------------------------- methods


Method = Callable[[Split], Ranker]


def served(config: TrainConfig, serve: Callable[[Artifact], Ranker]) -> Method:
    """The recommender the API serves: the artifact ``vitrine train`` would write from this split's
    training rows, scored through the engine's own code (``serve``)."""
    def method(split: Split) -> Ranker:
        return serve(fit(split.matrix(config), config))
    return method


@dataclass
class Scored:
    metrics: dict[str, float]
    ranked: list[list[str]]  # per query, in the split's order
    fit_s: float
    rank_s: float


def score(ranker: Ranker, split: Split, ks: Sequence[int]) -> dict[str, float]:
    return ranking_metrics([ranker(q) for q in split.queries], split.targets, ks, split.catalogue_size)


def compare(split: Split, methods: Mapping[str, Method], ks: Sequence[int]) -> dict[str, Scored]:
    """Every method fitted on the split's training rows and scored on its queries."""
    out: dict[str, Scored] = {}
    for name, method in methods.items():
        started = time.perf_counter()
        ranker = method(split)
        fitted = time.perf_counter()
        ranked = [ranker(q) for q in split.queries]
        metrics = ranking_metrics(ranked, split.targets, ks, split.catalogue_size)
        out[name] = Scored(metrics, ranked, round(fitted - started, 2), round(time.perf_counter() - fitted, 2))
    return out
