"""Where accepted events go: the embedded mode's log-then-apply path.

The API hands validated events to an ``EventSink`` and acknowledges once ``submit`` returns, so a
sink must only return when the events are durable. Embedded: the on-disk log, then the profiles.
Kafka mode (``streaming.producer``) implements the same protocol with the broker as the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from redis.exceptions import RedisError

from engine.apply import EventApplier
from engine.eventlog import EventLog
from engine.events import Event

log = logging.getLogger(__name__)
MAX_BACKLOG = 100_000


class SinkUnavailable(Exception):
    """The events could not be made durable (e.g. no broker acknowledged in time): nothing is
    promised, the client should retry with the same event ids (duplicates are harmless)."""


class EventSink(Protocol):
    async def submit(self, events: list[Event]) -> bool:
        """Make the events durable; True when profiles already reflect them."""
        ...

    async def close(self) -> None: ...


class EmbeddedSink:
    """Log to disk, then apply in process. If Redis is down the events are still safe on disk;
    they wait in a backlog that ``retry_backlog`` drains once Redis answers again."""

    def __init__(self, event_log: EventLog, applier: EventApplier, *, timeout_s: float = 0.5) -> None:
        self._log = event_log
        self._applier = applier
        self._timeout_s = timeout_s
        self._backlog: list[Event] = []
        self._backlog_lock = asyncio.Lock()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def submit(self, events: list[Event]) -> bool:
        await self._log.append(events)
        if self._backlog:
            self._queue(events)  # keep per-visitor order behind what is already waiting
            return False
        try:
            # A slow Redis must not hold the request: the events are on disk already, and a write
            # cut short is safe to redo (the apply script is atomic and skips what it has seen).
            async with asyncio.timeout(self._timeout_s):
                await self._applier.apply(events)
            return True
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("profiles not updated (%s); %d events queued for retry", type(exc).__name__, len(events))
            self._queue(events)
            return False

    def _queue(self, events: list[Event]) -> None:
        room = MAX_BACKLOG - len(self._backlog)
        if room < len(events):
            log.error("apply backlog full: %d events left to `vitrine replay`", len(events) - room)
        self._backlog.extend(events[:max(room, 0)])

    async def retry_backlog(self) -> int:
        async with self._backlog_lock:
            if not self._backlog:
                return 0
            batch = self._backlog[:1000]
            try:
                await self._applier.apply(batch)
            except (RedisError, OSError):
                return 0
            del self._backlog[: len(batch)]
            return len(batch)

    async def close(self) -> None:
        self._log.close()
