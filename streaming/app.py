"""The workers' faust app: one agent that applies the events topic to the profiles in Redis.

The agent takes batches from faust's stream; the worker's applier process
(``streaming.applier``) applies them, so faust's per-message path and the engine's work run on
two cores instead of taking turns on one.

Batching: the agent iterates faust's stream without acking (``stream.noack()``) and takes what is
already waiting in it (up to ``VITRINE_KAFKA_BATCH_MAX``) into one ``EventApplier.apply`` call (one
pipelined read, one pipelined write, in the applier process): a busy worker makes few Redis round
trips, an idle one applies each event the moment it arrives. ``stream.take(max_, within=)`` was measured instead: its
window cuts batches by time, so on a loaded worker they stayed small and the worker ran at a
fraction of faust's own rate (bench-stream's no-op agent). Up to two batches are handed to the
processor while the agent takes the next from the stream; the processor applies them in the order
they were handed over, so one visitor's events stay in order.
Events are acknowledged (so their offsets can be committed) only after their batch is applied or
dead-lettered; a batch cut short by a stop or a crash is delivered again: at-least-once, made exact
by the applier's per-event dedup.

Trending counters are updated by the same applier call (atomically with the profile), and
"bought together" is learned by ``vitrine train`` from the same history, so there is one agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import faust

from engine.settings import Settings
from streaming.applier.client import ApplierProcess
from streaming.metrics import WorkerMetrics
from streaming.processor import BatchProcessor, BatchResult, DeadLetter, Record
from streaming.topics import ensure_topics
from streaming.transport import broker_urls

log = logging.getLogger(__name__)
BATCH_HOLD_S = 0.002  # an open batch is handed over once no event came for this long (or up to twice it)
IN_FLIGHT = 2  # batches handed to the processor at once: the applier has the next while it applies one


def faust_options(settings: Settings) -> dict[str, Any]:
    """The faust App options of a worker (also given to the bench's do-nothing agent, so the two
    consume the same way)."""
    return dict(
        broker=broker_urls(settings.kafka_servers) or ["vitrine://127.0.0.1:9092"],
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        consumer_auto_offset_reset="earliest",  # a new group starts from the whole history
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        topic_replication_factor=settings.kafka_replication,
        web_enabled=False,
        datadir=str(settings.data_dir / "faust"),
    )


class StreamApp(faust.App):
    """A faust App that owns the worker's applier process (the engine: Redis client, catalogue,
    applier)."""

    def __init__(self, settings: Settings, redis_url: str | None, *, loglevel: str = "info",
                 **overrides: Any) -> None:
        super().__init__(settings.kafka_group_id, **{**faust_options(settings), **overrides})
        self.settings = settings
        self.redis_url = redis_url
        self.loglevel = loglevel
        self.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms  # read by streaming.transport
        self.applier: ApplierProcess | None = None
        self.processor: BatchProcessor | None = None
        self.metrics: WorkerMetrics | None = None
        self.events_topic = self.topic(
            settings.kafka_events_topic, partitions=settings.kafka_partitions,
            config={"retention.ms": str(settings.kafka_retention_ms)})
        self.dead_letter_topic = self.topic(settings.kafka_dead_letter_topic, partitions=1)
        self.apply_events = self.agent(self.events_topic, name="apply-events")(_apply_events_agent(self))

    async def on_first_start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
        await super().on_first_start()

    async def on_start(self) -> None:
        """Runs before the agents start: they find the engine ready."""
        await super().on_start()
        if self.redis_url is None:  # pragma: no cover - a worker is always given one
            raise RuntimeError("no Redis URL for the worker")
        await ensure_topics(self.settings)
        # With the model loaded, applying events also stores the visitors' for-you lists
        # (engine.ranking.stored), so the API replicas serve them without scoring.
        self.applier = ApplierProcess(self.settings, self.redis_url, self.loglevel)
        ready = await self.applier.start()
        self.processor = BatchProcessor(self.applier, self.send_dead_letters)
        log.info("worker ready: %d catalogue items, topic %s", ready.items, self.settings.kafka_events_topic)
        if self.settings.worker_metrics_port:
            self.metrics = WorkerMetrics(self)
            self.metrics.start(self.settings.host, self.settings.worker_metrics_port)

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.applier is not None:
            await self.applier.stop()

    async def send_dead_letters(self, dead: list[DeadLetter]) -> None:
        """The original bytes, unchanged (so they can be re-sent once fixed), with the error and
        where they came from in headers; returns once the brokers acknowledged them."""
        pending = []
        for letter in dead:
            record = letter.record
            headers = {
                "vitrine.error": letter.error.encode(),
                "vitrine.source": f"{record.topic}/{record.partition}/{record.offset}".encode(),
            }
            pending.append(await self.dead_letter_topic.send(key=record.key, value=record.value, headers=headers))
        for future in pending:
            await future


def _record(event: Any) -> Record:
    message = event.message
    return Record(value=message.value, key=message.key, topic=message.topic, partition=message.partition,
                  offset=message.offset)


class _Batches:
    """The agent's open batch, and the batches handed to the processor (oldest first), each of
    which acknowledges its own events when done.

    The agent takes events without a guard of its own; instead, while a batch is open, a timer
    checks every ``BATCH_HOLD_S`` that events still come and hands the batch over once none came
    since the last check. A rebalance clears the stream's buffer and then waits for every
    delivered event to be acknowledged: a batch held by an agent waiting for the next event would
    stall it for good."""

    def __init__(self, app: StreamApp, manual: Any) -> None:
        self._app, self._manual = app, manual
        self.open: list[Any] = []
        self.applying: deque[asyncio.Task[BatchResult]] = deque()
        self._checked_size = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, event: Any) -> None:
        self.open.append(event)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_HOLD_S, self._check)

    def cut(self) -> list[Any]:
        """The open batch, closed: the agent may hold it while it waits for the processor (that
        wait does not depend on the stream)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._checked_size = 0
        batch, self.open = self.open, []
        return batch

    def hand_over(self, batch: list[Any]) -> None:
        self.applying.append(asyncio.ensure_future(_flush(self._app, self._manual, batch)))

    def cancel(self) -> None:
        """The worker stops: what is not applied is unacknowledged, so delivered again."""
        if self._timer is not None:
            self._timer.cancel()
        for task in self.applying:
            task.cancel()

    def _check(self) -> None:
        self._timer = None
        if len(self.open) == self._checked_size:
            self.hand_over(self.cut())
        else:
            self._checked_size = len(self.open)
            self._timer = asyncio.get_running_loop().call_later(BATCH_HOLD_S, self._check)


def _apply_events_agent(app: StreamApp) -> Any:
    async def apply_events(stream: faust.StreamT) -> Any:
        manual = stream.noack()
        events = manual.events().__aiter__()
        batches = _Batches(app, manual)
        upcoming: asyncio.Future | None = None
        try:
            while True:
                while batches.applying and batches.applying[0].done():
                    yield batches.applying.popleft().result()
                if batches.applying and not batches.open and stream.channel.empty():
                    # Nothing to take now: report the oldest batch as soon as it is done.
                    if upcoming is None:
                        upcoming = asyncio.ensure_future(events.__anext__())
                    await asyncio.wait((upcoming, batches.applying[0]), return_when=asyncio.FIRST_COMPLETED)
                    if not upcoming.done():
                        continue
                try:
                    if upcoming is not None:
                        event, upcoming = await upcoming, None
                    else:
                        event = await events.__anext__()
                except StopAsyncIteration:  # the stream ended (the worker stops)
                    upcoming = None
                    break
                batches.add(event)
                if len(batches.open) >= app.settings.kafka_batch_max or stream.channel.empty():
                    batch = batches.cut()
                    while len(batches.applying) >= IN_FLIGHT:
                        yield await batches.applying.popleft()
                    batches.hand_over(batch)
            while batches.applying:
                yield await batches.applying.popleft()
        finally:
            if upcoming is not None:
                upcoming.cancel()
            batches.cancel()

    return apply_events


async def _flush(app: StreamApp, manual: Any, batch: list[Any]) -> BatchResult:
    """Apply the batch, then acknowledge it (applied or dead-lettered: its offsets may now be
    committed)."""
    processor = app.processor
    assert processor is not None, "StreamApp.on_start builds the processor"
    result = await processor.process([_record(e) for e in batch])
    for done in batch:
        await manual.ack(done)
    if result.duplicates:
        log.info("skipped %d events applied before (redelivered after a restart or rebalance)", result.duplicates)
    if result.erased:
        log.info("dropped %d events of people erased after they were accepted", result.erased)
    return result
