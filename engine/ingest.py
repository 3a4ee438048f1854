"""Where accepted events go: the embedded mode's log-then-apply path.

The API hands validated events to an ``EventSink`` and acknowledges once ``submit`` returns, so a
sink must only return when the events are durable. Embedded: the on-disk log, then the profiles.
Kafka mode (``streaming.producer``) implements the same protocol with the broker as the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Protocol


from engine import tasks
from engine.apply import EventApplier, transient
from engine.eventlog import EventLog
from engine.events import Event

log = logging.getLogger(__name__)
MAX_BACKLOG = 100_000  # events waiting in memory for Redis; past it they are left to `vitrine replay`
MERGE_MAX = 5_000  # events per apply call: one call's Redis scripts stay short
TASK_NAME = "apply-writer"
REPLAY_HINT = "they are in the event log: `vitrine replay --reset` rebuilds every profile from it"


class SinkUnavailable(Exception):
    """The events could not be made durable (e.g. no broker acknowledged in time): nothing is
    promised, the client should retry with the same event ids (duplicates are harmless)."""


class EventSink(Protocol):
    async def submit(self, events: list[Event]) -> bool:
        """Make the events durable; True when profiles already reflect them."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Submission:
    events: list[Event]
    done: asyncio.Future[bool] | None  # None: queued behind a failure, nobody waits for it


class ApplyWriter:
    """The one writer of profiles in a process (embedded mode).

    Requests queue their events; the writer applies everything queued so far in one
    ``EventApplier.apply`` call, then whatever arrived meanwhile in the next. Concurrent events for
    one visitor are thus folded in one plan instead of racing each other's compare-and-set, and a
    busy process makes one Redis round trip for many requests.

    When Redis fails, the events stay at the head of the queue, in order, and the writer retries
    until the queue is empty; later events queue behind them (per-visitor order holds). Events
    that cannot be applied for any other reason (a stored profile that is not a profile) are
    isolated visitor by visitor, logged and skipped, so they never block the rest.
    """

    def __init__(self, applier: EventApplier, *, max_backlog: int = MAX_BACKLOG, retry_s: float = 0.05,
                 max_retry_s: float = 1.0) -> None:
        self._applier = applier
        self._max_backlog = max_backlog
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._queue: deque[_Submission] = deque()
        self._queued = 0  # events in the queue, including the batch being applied
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failing = False
        self._task: asyncio.Task[Any] | None = None
        self.skipped = 0  # events logged and skipped (not applicable)
        self.dropped = 0  # events not kept because the backlog was full
        self._dropped_logged_at = float("-inf")

    @property
    def backlog(self) -> int:
        """Events accepted (logged) but not applied yet."""
        return self._queued

    def submit(self, events: list[Event]) -> asyncio.Future[bool] | None:
        """Queue the events; the future says whether they were applied (None: they wait behind a
        failure, or were dropped, so there is nothing to wait for)."""
        if self._task is None:
            self._task = tasks.start(TASK_NAME, self._step, first_backoff_s=self._retry_s,
                                     max_backoff_s=self._max_retry_s, expected=transient)
        if self._queued + len(events) > self._max_backlog:
            self._drop(len(events))
            return None
        done = None if self._failing else asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(events, done))
        self._queued += len(events)
        self._idle.clear()
        self._wake.set()
        return done

    def _drop(self, count: int) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._dropped_logged_at > 10:  # a long outage must not flood the log
            self._dropped_logged_at = now
            log.error("apply backlog full (%d events waiting for Redis): %d events so far not applied to "
                      "profiles; %s", self._queued, self.dropped, REPLAY_HINT)

    async def _step(self) -> None:
        """Apply what is queued (or wait for something to be). A failure leaves the batch at the
        head of the queue; the supervisor (engine.tasks) logs it once and retries with backoff."""
        if not self._queue:
            self._failing = False
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()
            return
        batch = self._head()
        events = [e for s in batch for e in s.events]
        try:
            await self._apply_or_isolate(events)
        except Exception:
            self._failing = True  # later submissions queue behind these without waiting
            self._resolve(batch, False)
            raise
        for _ in batch:
            self._queue.popleft()
        self._queued -= len(events)
        self._resolve(batch, True)

    def _head(self) -> list[_Submission]:
        """The submissions applied together: all queued, up to ``MERGE_MAX`` events (at least one
        submission, never split)."""
        batch, size = [], 0
        for submission in self._queue:
            if batch and size + len(submission.events) > MERGE_MAX:
                break
            batch.append(submission)
            size += len(submission.events)
        return batch

    @staticmethod
    def _resolve(batch: list[_Submission], applied: bool) -> None:
        for submission in batch:
            if submission.done is not None and not submission.done.done():
                submission.done.set_result(applied)
            submission.done = None

    async def _apply_or_isolate(self, events: list[Event]) -> None:
        try:
            await self._applier.apply(events)
        except Exception as exc:
            if transient(exc):
                raise
            await self._isolate(events)  # about the data: find and skip the events at fault

    async def _isolate(self, events: list[Event]) -> None:
        """Apply visitor by visitor (halving the set each time, so a few bad visitors among many
        cost a few calls); skip with an error the visitors whose events fail for a reason other
        than Redis. A Redis failure propagates: the whole batch is retried, which is harmless (the
        apply skips events it has already applied)."""
        groups: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            groups[event.visitor_id].append(event)
        await self._split(list(groups.values()))

    async def _split(self, groups: list[list[Event]]) -> None:
        mid = len(groups) // 2
        for half in (groups[:mid], groups[mid:]):
            if not half:
                continue
            try:
                await self._applier.apply([e for group in half for e in group])
            except Exception as exc:  # noqa: BLE001
                if transient(exc):
                    raise
                if len(half) > 1:
                    await self._split(half)
                    continue
                self.skipped += len(half[0])
                log.error("skipped %d events of visitor %r that cannot be applied (%s: %s); %s",
                          len(half[0]), half[0][0].visitor_id, type(exc).__name__, exc, REPLAY_HINT)

    async def close(self, timeout_s: float) -> int:
        """Give the queue up to ``timeout_s`` to drain, then stop; returns the events left."""
        if self._task is None:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        await tasks.stop(self._task)
        self._task = None
        if self._queued:
            log.error("shutting down with %d accepted events not applied to profiles (Redis did not answer "
                      "within %ss); %s", self._queued, timeout_s, REPLAY_HINT)
        return self._queued


class EmbeddedSink:
    """Log to disk, then hand the events to the process's ``ApplyWriter``. If Redis is down the
    events are safe on disk and wait in the writer's queue until it answers again."""

    def __init__(self, event_log: EventLog, applier: EventApplier, *, timeout_s: float = 0.5,
                 drain_timeout_s: float = 10.0) -> None:
        self._log = event_log
        self._writer = ApplyWriter(applier)
        self._timeout_s = timeout_s
        self._drain_timeout_s = drain_timeout_s

    @property
    def writer(self) -> ApplyWriter:
        return self._writer

    @property
    def backlog(self) -> int:
        return self._writer.backlog

    async def submit(self, events: list[Event]) -> bool:
        await self._log.append(events)
        done = self._writer.submit(events)
        if done is None:
            return False
        # A slow Redis must not hold the request: the events are on disk already and the writer
        # keeps them until they are applied.
        try:
            return await asyncio.wait_for(asyncio.shield(done), self._timeout_s)
        except TimeoutError:
            return False

    async def close(self) -> None:
        await self._writer.close(self._drain_timeout_s)
        self._log.close()
