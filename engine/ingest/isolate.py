"""Apply a batch whatever it holds: the one way events that cannot be applied are set aside.

The embedded writer, the log catch-up, ``vitrine replay`` and the stream workers all apply through
``apply_isolating``. A batch that fails for a reason other than the server (``transient`` in
``engine.ingest.apply``) holds at least one event that cannot be applied: a stored profile that is
not one, a key of another type, a bug hit by one input. It is found by halving: each half is
applied in turn and a half that fails is split again, down to single events. ``k`` bad events
among ``n`` cost O(k log n) apply calls, where trying each event alone costs ``n`` (each a Redis
round trip), however few are bad.

The batch is grouped by visitor first (stably, as ``EventApplier.apply`` folds it), and halves go
left to right: each visitor's good events still apply in order around the bad ones, and one
visitor's bad events sit together, so a corrupt profile is found in few calls. A transient
failure propagates: the caller retries the whole batch, which is harmless since the applier skips
the events it has applied already.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine.events.schema import Event
from engine.ingest.apply import ApplyStats, transient

log = logging.getLogger(__name__)

Apply = Callable[[list[Event]], Awaitable[ApplyStats]]


@dataclass(frozen=True)
class Rejected:
    event: Event
    error: BaseException


@dataclass
class Outcome:
    stats: ApplyStats = field(default_factory=ApplyStats)
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class Tally:
    """What a run over many batches did (catch-up, replay): each batch's outcome counted once."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    skipped: int = 0  # not applicable, logged
    seconds: float = 0.0

    def count(self, events: int, outcome: Outcome) -> None:
        log_skipped(outcome.rejected)
        self.events += events
        self.applied += outcome.stats.applied
        self.duplicates += outcome.stats.duplicates
        self.skipped += len(outcome.rejected)


def by_visitor(events: list[Event]) -> list[Event]:
    """The events grouped by visitor, in order of first appearance, each visitor's in order."""
    groups: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        groups[event.visitor_id].append(event)
    return [event for group in groups.values() for event in group]


async def apply_isolating(apply: Apply, events: list[Event]) -> Outcome:
    """Apply ``events`` with ``apply`` (``EventApplier.apply``); those that cannot be applied are
    returned in ``rejected`` with their error, the others are applied. Raises only a transient
    failure."""
    outcome = Outcome()
    if events:
        await _halve(apply, by_visitor(events), outcome)
    return outcome


async def _halve(apply: Apply, events: list[Event], outcome: Outcome) -> None:
    try:
        stats = await apply(events)
    except Exception as exc:  # noqa: BLE001 - a bad event is what is being looked for
        if transient(exc):
            raise
        if len(events) == 1:
            outcome.rejected.append(Rejected(events[0], exc))
            return
        mid = len(events) // 2
        await _halve(apply, events[:mid], outcome)
        await _halve(apply, events[mid:], outcome)
        return
    outcome.stats.applied += stats.applied
    outcome.stats.duplicates += stats.duplicates
    outcome.stats.erased += stats.erased
    outcome.stats.rounds += stats.rounds


def log_skipped(rejected: list[Rejected]) -> None:
    """One error line per visitor whose events were skipped, with the first error."""
    per_visitor: dict[str, list[Rejected]] = defaultdict(list)
    for r in rejected:
        per_visitor[r.event.visitor_id].append(r)
    for visitor_id, skipped in per_visitor.items():
        error = skipped[0].error
        log.error("skipped %d events of visitor %r that cannot be applied (%s: %s); `vitrine replay --reset` "
                  "applies them once the cause is fixed", len(skipped), visitor_id, type(error).__name__, error)
