"""What a worker does with a batch of Kafka records, without faust: decode, apply, set poison aside.

Applying is ``engine.ingest.isolate.apply_isolating`` over ``EventApplier.apply``, the very code
the embedded mode runs; it is exactly-once by event id, so re-applying after a crash or a
rebalance changes nothing. Here we only decide where failures go:

- the infrastructure failed (Redis unreachable, or refusing writes: out of memory, a failing
  snapshot, a read-only replica, a busy script; contention; the dead-letter topic not acking):
  wait and retry the same records, forever, with the backoff of every background task
  (``engine.tasks.retry``). The offsets are not committed meanwhile, so a worker killed in that
  state loses nothing.
- the record itself is bad (not a valid event, or one that ``apply_isolating`` sets aside, e.g.
  ``CorruptProfile`` for an unreadable stored profile): it goes to the dead-letter topic with the
  error, and the rest of the batch (and partition) moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from engine import tasks
from engine.events.schema import Event
from engine.ingest.apply import EventApplier, transient
from engine.ingest.isolate import apply_isolating

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 5.0


@dataclass(frozen=True)
class Record:
    """One Kafka record as the processor needs it (faust events are adapted in ``streaming.app``)."""

    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    error: str


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    erased: int = 0  # accepted before their person was erased
    dead: list[DeadLetter] = field(default_factory=list)


DeadLetterSink = Callable[[list[DeadLetter]], Awaitable[None]]


def decode(value: bytes) -> Event:
    """A record's value as an Event; raises ValueError (pydantic's ValidationError is one)."""
    return Event.model_validate_json(value)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _infrastructure(exc: BaseException) -> bool:
    return transient(exc) or isinstance(exc, KafkaError)


RecordApply = Callable[[list[Record]], Awaitable[BatchResult]]


class LocalApply:
    """Decode and apply batches in this process, one at a time in the order they were handed over;
    the records that cannot be applied come back as dead letters, not yet sent. A worker runs this
    in its applier process (``streaming.applier.child``); tests run it in theirs."""

    def __init__(self, applier: EventApplier, *, first_backoff_s: float = 0.05) -> None:
        self._applier = applier
        self._streak = tasks.FailureStreak("stream-apply", first_backoff_s=first_backoff_s,
                                           max_backoff_s=MAX_BACKOFF_S, expected=transient)
        self._turn = asyncio.Lock()  # first come, first served

    async def __call__(self, records: list[Record]) -> BatchResult:
        async with self._turn:
            return await self._apply(records)

    async def _apply(self, records: list[Record]) -> BatchResult:
        result = BatchResult()
        good: dict[int, Record] = {}  # id of the decoded event -> its record
        events: list[Event] = []
        for record in records:
            try:
                event = decode(record.value)
            except ValueError as exc:
                result.dead.append(DeadLetter(record, f"not a valid event: {describe(exc)}"))
                continue
            good[id(event)] = record
            events.append(event)
        if events:
            outcome = await tasks.retry(lambda: apply_isolating(self._applier.apply, events), self._streak,
                                        retry_if=transient)
            result.applied += outcome.stats.applied
            result.duplicates += outcome.stats.duplicates
            result.erased += outcome.stats.erased
            result.dead += [DeadLetter(good[id(r.event)], f"processing failed: {describe(r.error)}")
                            for r in outcome.rejected]
        if result.dead:
            position = {id(record): i for i, record in enumerate(records)}
            result.dead.sort(key=lambda dead: position[id(dead.record)])  # in the partition's order
        return result


class BatchProcessor:
    def __init__(self, apply: RecordApply, dead_letters: DeadLetterSink, *, first_backoff_s: float = 0.05) -> None:
        """``apply``: what applies the records (a worker's ``streaming.applier.client.ApplierProcess``,
        or ``LocalApply`` in this process)."""
        self._apply = apply
        self._applying = tasks.FailureStreak("stream-batch", first_backoff_s=first_backoff_s,
                                             max_backoff_s=MAX_BACKOFF_S)
        self._dead_letters = dead_letters
        self._dead_lettering = tasks.FailureStreak("stream-dead-letters", first_backoff_s=first_backoff_s,
                                                   max_backoff_s=MAX_BACKOFF_S, expected=_infrastructure)

    async def process(self, records: list[Record]) -> BatchResult:
        """Apply the batch; returns once every record is either applied or dead-lettered.

        ``apply`` sets bad records aside and waits out the infrastructure itself; whatever else it
        raises (a bug on its path) is retried too, logged with its stack and counted, because a
        worker that dropped the batch would hold its events unacknowledged and stall its partitions
        without a word."""
        result = await tasks.retry(lambda: self._apply(records), self._applying)
        if result.dead:
            for dead in result.dead:
                log.error("dead-lettering %s[%d]@%d: %s", dead.record.topic, dead.record.partition,
                          dead.record.offset, dead.error)
            await tasks.retry(lambda: self._dead_letters(result.dead), self._dead_lettering,
                              retry_if=_infrastructure)
        return result
