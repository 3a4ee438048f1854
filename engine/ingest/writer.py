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
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from engine import tasks
from engine.ingest.apply import EventApplier, transient
from engine.ingest.checkpoint import Checkpoint
from engine.events.log import EventLog, Span, read_span
from engine.events.schema import Event
from engine.ingest.isolate import apply_isolating, log_skipped

log = logging.getLogger(__name__)
MAX_BACKLOG = 100_000  # events waiting in memory for Redis; past it they are read back from the log
MERGE_MAX = 5_000  # events per apply call: one call's Redis scripts stay short
DRAIN_TIMEOUT_S = 10.0  # how long a closing writer waits for Redis to take its queue
TASK_NAME = "apply-writer"
REPLAY_HINT = "they are in the event log, and the next start applies them (or `vitrine replay`, now)"


class SinkUnavailable(Exception):
    """The events could not be made durable (e.g. no broker acknowledged in time, or the disk is
    full): nothing is promised, the client should retry with the same event ids (duplicates are
    harmless)."""


class EventSink(Protocol):
    async def submit(self, events: list[Event]) -> bool:
        """Make the events durable; True when profiles already reflect them."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Submission:
    events: list[Event] | None  # None: not kept in memory (backlog full), read back from the log
    count: int
    span: Span
    seq: int  # the log's write number: applied once the log has settled it (fsync'd)
    done: asyncio.Future[bool] | None  # None: queued behind a failure, nobody waits for it


class ApplyWriter:
    """The one writer of profiles in a process (embedded mode).

    Requests queue their events in the order they were written to the log; the writer applies
    everything queued and fsync'd so far in one ``EventApplier.apply`` call, then whatever arrived
    meanwhile in the next. Concurrent events for one visitor are thus folded in one plan instead of
    racing each other's compare-and-set, and a busy process makes one Redis round trip for many
    requests.

    When Redis fails, the events stay at the head of the queue, in order, and the writer retries
    until the queue is empty; later events queue behind them (per-visitor order holds). Past
    ``max_backlog`` events in memory, later events are queued by their place in the log only and
    read back from it when their turn comes, so memory stays bounded and order holds. Events that
    cannot be applied for any other reason are isolated, logged and skipped
    (``engine.ingest.isolate``).

    Because the queue is in log order, everything before the head of the queue is applied (or
    skipped): after each apply the writer moves its segments' offsets in the checkpoint there.
    """

    def __init__(self, applier: EventApplier, event_log: EventLog, checkpoint: Checkpoint | None = None, *,
                 max_backlog: int = MAX_BACKLOG, retry_s: float = 0.05, max_retry_s: float = 1.0) -> None:
        self._applier = applier
        self._log = event_log
        self._checkpoint = checkpoint
        self._max_backlog = max_backlog
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._queue: deque[_Submission] = deque()
        self._queued = 0  # events in the queue, including the batch being applied
        self._in_memory = 0  # of which kept in memory
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failing = False
        self._task: asyncio.Task[Any] | None = None
        self._unsaved: dict[str, int] = {}  # checkpoint offsets not stored yet (Redis failed)
        self.applied = 0  # events applied to the profiles (not counting duplicates)
        self.skipped = 0  # events logged and skipped (not applicable)
        self.spilled = 0  # events left in the log because the backlog was full, read back later
        self._spilled_logged_at = float("-inf")

    @property
    def backlog(self) -> int:
        """Events accepted (logged) but not applied yet."""
        return self._queued

    def submit(self, events: list[Event], span: Span, seq: int) -> asyncio.Future[bool] | None:
        """Queue events just written to the log at ``span`` by write number ``seq``; the future says
        whether they were applied (None: they wait behind a failure, or in the log, so there is
        nothing to wait for)."""
        if self._task is None:
            self._task = tasks.start(TASK_NAME, self._step, first_backoff_s=self._retry_s,
                                     max_backoff_s=self._max_retry_s, expected=transient)
        count = len(events)
        self._queued += count
        self._idle.clear()
        self._wake.set()
        if self._in_memory + count > self._max_backlog:
            self._spill(span, seq, count)
            return None
        done = None if self._failing else asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(events, count, span, seq, done))
        self._in_memory += count
        return done

    def _spill(self, span: Span, seq: int, count: int) -> None:
        last = self._queue[-1] if self._queue else None
        if last is not None and last.events is None and last.span.segment == span.segment \
                and last.span.end == span.start:  # one entry for a run of spilled writes
            last.span, last.count, last.seq = Span(span.segment, last.span.start, span.end), last.count + count, seq
        else:
            self._queue.append(_Submission(None, count, span, seq, None))
        self.spilled += count
        now = time.monotonic()
        if now - self._spilled_logged_at > 10:  # a long outage must not flood the log
            self._spilled_logged_at = now
            log.warning("apply backlog full (%d events waiting for Redis): %d events so far left in the event log, "
                        "read back once Redis catches up", self._queued, self.spilled)

    async def _step(self) -> None:
        """Apply what is queued and on disk (or wait for something to be). A failure leaves the
        batch at the head of the queue; the supervisor (engine.tasks) logs it once and retries with
        backoff."""
        self._wake.clear()
        if not self._queue:
            self._failing = False
            self._idle.set()
            await self._wake.wait()
            return
        head = self._queue[0]
        if head.seq > self._log.settled:
            # Applied only once on disk. This shares the request's group commit; waiting for it
            # here rather than on a call from the request keeps the queue moving if that request
            # is cancelled. A failed fsync settles the write too (the request got a 503).
            with contextlib.suppress(OSError):
                await self._log.sync(head.seq)
            return
        batch = self._head()
        try:
            if batch[0].events is None:
                applied_to = await self._apply_from_log(batch[0])
            else:
                applied_to = await self._apply(batch)
        except Exception:
            self._failing = True  # later submissions queue behind these without waiting
            self._resolve(batch, False)
            raise
        await self._save(applied_to)

    def _head(self) -> list[_Submission]:
        """The submissions applied together: the settled ones at the head, up to ``MERGE_MAX``
        events (at least one submission, never split); a spilled one goes alone."""
        batch: list[_Submission] = []
        size, settled = 0, self._log.settled
        for submission in self._queue:
            if submission.seq > settled or (batch and (submission.events is None
                                                       or size + submission.count > MERGE_MAX)):
                break
            batch.append(submission)
            size += submission.count
            if submission.events is None:
                break
        return batch

    async def _apply(self, batch: list[_Submission]) -> dict[str, int]:
        events = [e for s in batch for e in s.events or ()]
        await self._apply_events(events)
        for _ in batch:
            self._queue.popleft()
        self._queued -= len(events)
        self._in_memory -= len(events)
        self._resolve(batch, True)
        return {s.span.segment: s.span.end for s in batch}

    async def _apply_from_log(self, head: _Submission) -> dict[str, int]:
        """Read back the next chunk of a spilled span and apply it."""
        try:
            events, end = await asyncio.to_thread(read_span, self._log.directory, head.span, MERGE_MAX)
        except (OSError, ValueError) as exc:
            log.error("cannot read back %d spilled events from %s (%s); the next start applies what it can read",
                      head.count, head.span.segment, exc)
            events, end = [], head.span.end
        await self._apply_events(events)
        done = min(len(events), head.count) if end < head.span.end else head.count
        head.span, head.count = Span(head.span.segment, end, head.span.end), head.count - done
        self._queued -= done
        if end >= head.span.end:
            self._queue.popleft()
        return {head.span.segment: end}

    async def _apply_events(self, events: list[Event]) -> None:
        outcome = await apply_isolating(self._applier.apply, events)
        self.applied += outcome.stats.applied
        self.skipped += len(outcome.rejected)
        log_skipped(outcome.rejected)

    async def _save(self, offsets: dict[str, int]) -> None:
        """Move the checkpoint; if Redis fails now, the next save carries these offsets too."""
        if self._checkpoint is None:
            return
        self._unsaved.update(offsets)
        try:
            await self._checkpoint.save(self._unsaved)
        except Exception as exc:  # noqa: BLE001 - an older checkpoint only means re-applying a few no-ops
            log.debug("checkpoint not moved (%s: %s)", type(exc).__name__, exc)
            return
        self._unsaved = {}

    @staticmethod
    def _resolve(batch: list[_Submission], applied: bool) -> None:
        for submission in batch:
            if submission.done is not None and not submission.done.done():
                submission.done.set_result(applied)
            submission.done = None

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
    events are safe on disk and wait in the writer's queue until it answers again. If the disk
    refuses them, nothing is acknowledged (``SinkUnavailable``) and the log stays readable.
    ``timeout_s``: how long ``submit`` waits for the events to be applied (None: until they are,
    unless the writer is failing; what an import wants, so that it goes at the pace of Redis)."""

    def __init__(self, event_log: EventLog, applier: EventApplier, checkpoint: Checkpoint | None = None, *,
                 timeout_s: float | None = 0.5, drain_timeout_s: float = DRAIN_TIMEOUT_S, max_backlog: int = MAX_BACKLOG) -> None:
        self._log = event_log
        self._writer = ApplyWriter(applier, event_log, checkpoint, max_backlog=max_backlog)
        self._timeout_s = timeout_s
        self._drain_timeout_s = drain_timeout_s
        self.log_failures = 0
        self._failure_logged_at = float("-inf")

    @property
    def writer(self) -> ApplyWriter:
        return self._writer

    @property
    def backlog(self) -> int:
        return self._writer.backlog

    async def submit(self, events: list[Event]) -> bool:
        try:
            span = self._log.write(events)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        if span is None:
            return True
        seq = self._log.written
        done = self._writer.submit(events, span, seq)
        try:
            await self._log.sync(seq)
        except OSError as exc:
            # The lines may or may not be on disk: not acknowledged, but applied all the same
            # (a retry with the same ids is then a no-op).
            raise self._unavailable(exc) from exc
        if done is None:
            return False
        # A slow Redis must not hold the request: the events are on disk already and the writer
        # keeps them until they are applied.
        try:
            return await asyncio.wait_for(asyncio.shield(done), self._timeout_s)
        except TimeoutError:
            return False

    def _unavailable(self, exc: OSError) -> SinkUnavailable:
        self.log_failures += 1
        now = time.monotonic()
        if now - self._failure_logged_at > 10:  # a full disk must not flood the process log
            self._failure_logged_at = now
            log.error("the event log cannot be written (%s); events are refused with 503 until it can "
                      "(%d refusals so far)", exc.strerror or exc, self.log_failures)
        return SinkUnavailable(f"the event log cannot be written ({exc.strerror or exc})")

    async def close(self) -> None:
        await self._writer.close(self._drain_timeout_s)
        self._log.close()
