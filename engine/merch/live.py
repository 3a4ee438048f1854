"""The rules being served: a validated snapshot, hot-reloaded from the rules file.

``RulesHolder.reload`` reads the file (``VITRINE_RULES_FILE``) on every poll tick; when its bytes
changed it validates them and swaps in a new ``RulesSnapshot`` with one reference assignment, so a
request runs start to end on one version. An invalid file changes nothing that is served: the
error (file, line, field) is logged once and kept for ``GET /v1/admin/rules``. Without a file the
built-in placements apply (version ``default``).

What can be computed once per (rules, model, catalogue) version is: each placement's effective
rules at a given set of running campaigns, the filters' selectivity (to size the candidate pool)
and the promoted items by popularity. The request path only looks them up.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.catalog import Catalogue
from engine.merch.experiments import CONTROL, HOLDOUT, NO_EXPERIMENT, PERSONALISED, Arm, in_control_group, variant_of
from engine.ranking.model import ServedModel
from engine.merch.loader import RulesError, RulesInvalid, load_rules
from engine.merch.schema import Audience, Block, PlacementRules, RulesFile, Selector, Variant
from engine.merch.segments import SegmentSet
from engine.merch.stage import Effective
from engine.ranking.scenarios import DEFAULT_PLACEMENTS
from engine.merch.selectors import item_set, matches

log = logging.getLogger(__name__)
DEFAULT_VERSION = "default"
PROMOTED_FALLBACK = 50
SETTLE_S = 0.1
MAX_RULES_BYTES = 512 * 1024  # a file of thousands of rules; parsing time grows with the size, so it is bounded
_VARIANT_ONLY = {"name", "weight"}


def version_of(text: bytes) -> str:
    """What ``sha256sum rules.yaml | cut -c1-12`` prints: easy to check by hand."""
    return hashlib.sha256(text).hexdigest()[:12]


@dataclass
class RulesSnapshot:
    version: str
    source: str
    rules: RulesFile
    text: str = ""
    loaded_at: float = field(default_factory=time.time)
    _effective: dict[tuple[Any, ...], Effective] = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- placements

    @functools.cached_property
    def placements(self) -> dict[str, tuple[str, ...]]:
        chains = dict(DEFAULT_PLACEMENTS)
        for name, rule in self.rules.placements.items():
            if rule.scenarios:
                chains[name] = tuple(rule.scenarios)
        return chains

    def running_experiment(self, placement: str, now: float) -> str | None:
        for name, exp in self.rules.experiments.items():
            if exp.placement == placement and exp.active(now):
                return name
        return None

    @functools.cached_property
    def segments(self) -> SegmentSet:
        return SegmentSet.of(self.rules.segments)

    def assign(self, visitor_id: str | None, placement: str, now: float, *, eligible: bool = True) -> Arm:
        """The control group first (it sees no experiment), then the placement's experiment
        (``eligible=False``: the arm of someone its segments keep out of it)."""
        experiment = self.running_experiment(placement, now)
        group = self.rules.control_group
        if in_control_group(group, visitor_id):
            return Arm(experiment or HOLDOUT, CONTROL, personalised=False)
        if experiment and visitor_id and eligible:
            return Arm(experiment, variant_of(experiment, self.rules.experiments[experiment], visitor_id))
        if group is not None and group.share > 0 and visitor_id:
            return Arm(HOLDOUT, PERSONALISED)
        return NO_EXPERIMENT

    def gate(self, arm: Arm) -> Audience | None:
        """The segments an experiment arm is restricted to (None: everyone may be in it); known
        only once the profile is read, so the arm is then kept or exchanged (engine.recommend)."""
        exp = self.rules.experiments.get(arm.experiment or "")
        return exp if exp is not None and arm.personalised and exp.restricted else None

    def can_assign(self, experiment: str, arm: str) -> bool:
        """Whether these rules can give out this arm: impressions and clicks are counted only for
        such arms (the name comes back from the browser)."""
        if experiment == HOLDOUT:
            return self.rules.control_group is not None and arm in (CONTROL, PERSONALISED)
        exp = self.rules.experiments.get(experiment)
        return exp is not None and (arm == CONTROL or any(v.name == arm for v in exp.variants))

    def _variant(self, arm: Arm) -> Variant | None:
        """The experiment variant whose rules the arm uses (None: the placement's own)."""
        exp = self.rules.experiments.get(arm.experiment or "")
        return next((v for v in exp.variants if v.name == arm.name), None) if exp else None

    def _base_rules(self, placement: str, variant: Variant | None) -> PlacementRules:
        base = self.rules.placements.get(placement) or PlacementRules()
        if variant is None:
            return base
        overrides = {k: getattr(variant, k) for k in variant.model_fields_set - _VARIANT_ONLY}
        return base.model_copy(update=overrides)

    def effective(self, placement: str, arm: Arm, now: float, model: ServedModel | None,
                  catalogue: Catalogue) -> Effective:
        running = tuple(name for name, c in self.rules.campaigns.items()
                        if placement in c.placements and c.active(now))
        variant = self._variant(arm)
        # Control and holdout arms use the placement's own rules: one entry for all of them.
        key = (placement, arm.experiment if variant else None, variant.name if variant else None, running,
               catalogue.version, model.version if model else None)
        eff = self._effective.get(key)
        if eff is None:
            if len(self._effective) > 256:  # old model/catalogue versions: start afresh
                self._effective.clear()
            eff = self._effective[key] = self._compile(placement, variant, running, now, model, catalogue)
        return eff

    def _compile(self, placement: str, variant: Variant | None, running: tuple[str, ...], now: float,
                 model: ServedModel | None, catalogue: Catalogue) -> Effective:
        base = self._base_rules(placement, variant)
        filters = [base.filter] if base.filter else []
        boosts, pins, promoted = [*base.boosts, *base.buries], list(base.pins), base.promoted
        for name in running:
            extra = self.rules.campaigns[name].placements[placement]
            if extra.filter:
                filters.append(extra.filter)
            boosts += [*extra.boosts, *extra.buries]
            pins = [*extra.pins, *pins]  # a running campaign's pins win their slots
            promoted = extra.promoted or promoted  # a running campaign's promotion takes over
        chain = tuple(base.scenarios) if base.scenarios else self.placements[placement]
        items = catalogue.items
        selectivity = 1.0
        if filters and items:
            passing = sum(1 for it in items.values() if all(matches(f, it, now) for f in filters))
            selectivity = passing / len(items)
        fallback: tuple[str, ...] = ()
        if promoted is not None:
            fallback = _promoted_by_popularity(promoted.select, filters, model, catalogue, now)
        eff = Effective(chain=chain, filters=tuple(filters), boosts=tuple(boosts), pins=tuple(pins),
                        promoted=promoted, promoted_fallback=fallback, diversity=base.diversity,
                        repetition=base.repetition, candidates=base.candidates, selectivity=selectivity)
        if model is None or not eff.has_rules:
            return eff
        ids, index = model.item_ids, model.item_index
        static = [b for b in boosts if b.when is not None and b.when.new_arrivals is None and not b.restricted]
        factors = [math.prod(b.factor for b in static if matches(b.when, items.get(i), now))  # type: ignore[arg-type]
                   for i in ids] if static else None
        return replace(
            eff,
            allowed=item_set(filters, ids, index, items, now) if filters else None,
            promoted_set=item_set([promoted.select], ids, index, items, now) if promoted else None,
            index=index,
            static_boost=factors,
            dynamic_boosts=tuple(b for b in boosts if b not in static),
        )

    def warm(self, model: ServedModel | None, catalogue: Catalogue, now: float) -> None:
        """Compile what requests will ask for now, off the request path."""
        for placement in self.placements:
            self.effective(placement, NO_EXPERIMENT, now, model, catalogue)
        for name, exp in self.rules.experiments.items():
            for v in exp.variants:
                self.effective(exp.placement, Arm(name, v.name), now, model, catalogue)

    # ---------------------------------------------------------------- blocks

    def blocks_for(self, slot: str) -> list[Block]:
        """The slot's blocks, highest priority first (file order breaks ties)."""
        return sorted((b for b in self.rules.blocks if b.slot == slot), key=lambda b: -b.priority)

    @property
    def slots(self) -> list[str]:
        return sorted({b.slot for b in self.rules.blocks})


def _promoted_by_popularity(select: Selector, filters: list[Selector], model: ServedModel | None,
                            catalogue: Catalogue, now: float) -> tuple[str, ...]:
    if model is not None:
        order = (model.item_ids[i] for i in model.view(catalogue).popular_order)
    else:
        order = iter(sorted(catalogue.items))
    out: list[str] = []
    for item_id in order:
        item = catalogue.items.get(item_id)
        if matches(select, item, now) and all(matches(f, item, now) for f in filters):
            out.append(item_id)
            if len(out) == PROMOTED_FALLBACK:
                break
    return tuple(out)


def parse_snapshot(text: bytes, source: str, item_exists: Callable[[str], bool] | None,
                   max_window_s: int | None = None) -> RulesSnapshot:
    """Validate rules text into a snapshot; ``RulesInvalid`` names file, line and field."""
    if len(text) > MAX_RULES_BYTES:
        raise RulesInvalid([RulesError(source, None, "", f"the rules file is {len(text)} bytes, more than the "
                                                         f"{MAX_RULES_BYTES} a rules file may have")])
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        lines = re.split(rb"\r\n|\n|\r", text[:exc.start])
        raise RulesInvalid([RulesError(source, len(lines), "", f"not UTF-8 text: byte {text[exc.start]:#04x} at byte "
                                                               f"{len(lines[-1]) + 1} of the line ({exc.reason}); "
                                                               f"save the file as UTF-8")]) from None
    rules = load_rules(decoded, source, item_exists, max_window_s)
    return RulesSnapshot(version=version_of(text), source=source, rules=rules, text=decoded)


def parse_file(text: bytes, path: str, item_exists: Callable[[str], bool] | None,
               max_window_s: int | None = None) -> RulesSnapshot:
    """A rules file's validation, the service's and `vitrine check-rules`': a draft's, and the
    file must not be empty (a file emptied by mistake must not remove every rule)."""
    if not text.strip():
        raise RulesInvalid([RulesError(path, None, "", "the rules file is empty (unset VITRINE_RULES_FILE to "
                                                       "use the built-in rules)")])
    return parse_snapshot(text, path, item_exists, max_window_s)


DEFAULT_SNAPSHOT = RulesSnapshot(version=DEFAULT_VERSION, source="built-in", rules=RulesFile())


class RulesHolder:
    """The live snapshot of this process, the last load error, and the file watch."""

    def __init__(self, path: Path | None, item_exists: Callable[[str], bool] | None = None,
                 max_window_s: int | None = None, prepare: Callable[[RulesSnapshot], None] | None = None) -> None:
        """``prepare`` runs on a new snapshot before it goes live (the engine compiles its
        placements there, so the first requests after a change do not)."""
        self.path = path
        self.item_exists = item_exists
        self.max_window_s = max_window_s
        self.current: RulesSnapshot = DEFAULT_SNAPSHOT
        self.errors: list[RulesError] = []
        self.error_at: float | None = None
        self.failures = 0  # rejected loads since start (each bad version once)
        self._seen: str | None = None  # hash of the last bytes looked at, good or bad
        self._prepare = prepare
        self._lock = threading.Lock()  # the poll loop and the admin route may reload at once

    def reload(self, *, force: bool = False) -> bool:
        """Load the file if it changed; True when a new version went live. Blocking (file I/O,
        parsing, ``prepare``): async callers run it in a thread.

        A file modified less than ``SETTLE_S`` ago is left for the next tick (unless ``force``):
        polling must not catch an editor or a deploy half-way through writing it, when a cut-off
        file may still be valid YAML that says less than was meant.
        """
        if self.path is None:
            return False
        with self._lock:
            return self._reload(self.path, force)

    def _reload(self, path: Path, force: bool) -> bool:
        try:
            before = path.stat()
            if not force and time.time() - before.st_mtime < SETTLE_S:
                return False
            text = path.read_bytes()
            after = path.stat()
        except OSError as exc:
            self._fail(version_of(str(exc).encode()),
                       [RulesError(str(path), None, "", f"cannot read the rules file: {exc.strerror}")])
            return False
        if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
            return False  # written while we read: next tick
        seen = version_of(text)
        if seen == self._seen:
            return False
        self._seen = seen
        if seen == self.current.version:
            self.errors, self.error_at = [], None
            return False
        try:
            snapshot = parse_file(text, str(path), self.item_exists, self.max_window_s)
        except RulesInvalid as exc:
            self._fail(seen, exc.errors)
            return False
        except Exception as exc:
            # A bug, not the file's fault: shown as the file's status like any error (the poller
            # logs the traceback once), and not retried until the file changes.
            self._fail(seen, [RulesError(str(path), None, "", f"the rules could not be validated "
                                                              f"({type(exc).__name__}: {exc}), please report it")])
            raise
        if self._prepare is not None:
            try:
                self._prepare(snapshot)
            except Exception:  # noqa: BLE001 - requests compile what they need themselves
                log.exception("preparing rules %s failed", snapshot.version)
        self.current = snapshot  # the swap: one reference assignment
        self.errors, self.error_at = [], None
        log.info("rules %s live from %s", snapshot.version, path)
        return True

    def parse(self, text: bytes, source: str) -> RulesSnapshot:
        """Validate rules text against this process's catalogue and retention (also for drafts)."""
        return parse_snapshot(text, source, self.item_exists, self.max_window_s)

    def _fail(self, seen: str, errors: list[RulesError]) -> None:
        self._seen = seen
        if self.errors != errors:
            self.failures += 1
            for error in errors:
                log.error("rules file rejected, still serving %s: %s", self.current.version, error)
            self.errors, self.error_at = errors, time.time()

    def status(self) -> dict[str, Any]:
        snap = self.current
        return {
            "version": snap.version,
            "source": snap.source,
            "file": str(self.path) if self.path else None,
            "loaded_at": snap.loaded_at,
            "status": "error" if self.errors else "ok",
            "errors": [e.to_json() for e in self.errors],
            "error_since": self.error_at,
            "placements": {k: list(v) for k, v in snap.placements.items()},
            "slots": snap.slots,
        }
