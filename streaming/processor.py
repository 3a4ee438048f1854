"""What a worker does with a batch of Kafka records, without faust: decode, apply, set poison aside.

The profile update itself is ``EventApplier.apply``, the very code the embedded mode runs; it is
exactly-once by event id, so re-applying after a crash or a rebalance changes nothing. Here we only
decide what to do when applying fails:

- the infrastructure failed (Redis unreachable, or refusing writes: out of memory, a failing
  snapshot, a read-only replica, a busy script; contention; the dead-letter topic not acking):
  wait and retry the same records, forever. The offsets are not committed meanwhile, so a worker
  killed in that state loses nothing. Any Redis error counts: they all say something about the
  server, none about the event.
- the record itself is bad (not a valid event, or its processing raises, e.g. ``CorruptProfile``
  for an unreadable stored profile): it goes to the dead-letter topic with the error, and the
  rest of the batch (and partition) moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from engine.ingest.apply import ApplyStats, EventApplier, transient
from engine.events.schema import Event

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 5.0
T = TypeVar("T")


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
    dead: list[DeadLetter] = field(default_factory=list)


DeadLetterSink = Callable[[list[DeadLetter]], Awaitable[None]]


def decode(value: bytes) -> Event:
    """A record's value as an Event; raises ValueError (pydantic's ValidationError is one)."""
    return Event.model_validate_json(value)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class BatchProcessor:
    def __init__(self, applier: EventApplier, dead_letters: DeadLetterSink, *,
                 first_backoff_s: float = 0.05) -> None:
        self._applier = applier
        self._dead_letters = dead_letters
        self._first_backoff_s = first_backoff_s

    async def process(self, records: list[Record]) -> BatchResult:
        """Apply the batch; returns once every record is either applied or dead-lettered."""
        result = BatchResult()
        good: list[tuple[Record, Event]] = []
        for record in records:
            try:
                good.append((record, decode(record.value)))
            except ValueError as exc:
                result.dead.append(DeadLetter(record, f"not a valid event: {describe(exc)}"))
        if good:
            try:
                self._add(result, await self._retrying(self._applier.apply, [e for _, e in good]))
            except Exception:  # noqa: BLE001 - something in the batch is poison: find it, keep the rest
                await self._one_by_one(good, result)
        if result.dead:
            for dead in result.dead:
                log.error("dead-lettering %s[%d]@%d: %s", dead.record.topic, dead.record.partition,
                          dead.record.offset, dead.error)
            await self._retrying(self._dead_letters, result.dead)
        return result

    async def _one_by_one(self, good: list[tuple[Record, Event]], result: BatchResult) -> None:
        """In order, so each visitor's events still apply in sequence around the bad one."""
        for record, event in good:
            try:
                self._add(result, await self._retrying(self._applier.apply, [event]))
            except Exception as exc:  # noqa: BLE001
                result.dead.append(DeadLetter(record, f"processing failed: {describe(exc)}"))

    @staticmethod
    def _add(result: BatchResult, stats: ApplyStats) -> None:
        result.applied += stats.applied
        result.duplicates += stats.duplicates

    async def _retrying(self, call: Callable[[list[Any]], Awaitable[T]], arg: list[Any]) -> T:
        """Infrastructure errors never reach the caller: it waits here until they pass."""
        backoff = self._first_backoff_s
        while True:
            try:
                return await call(arg)
            except Exception as exc:
                if not (transient(exc) or isinstance(exc, KafkaError)):
                    raise
                log.warning("%s; retrying %d records in %.2fs", describe(exc), len(arg), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
