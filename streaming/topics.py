"""The events topic as Vitrine's durable log: creating it right, and reading it from offset 0.

The topic is keyed by visitor id, so one visitor's events stay in order on one partition, and it
keeps its history (``VITRINE_KAFKA_RETENTION_MS=-1``) because ``vitrine replay`` and
``vitrine train`` read it from the beginning, as the embedded mode reads its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from engine.events.schema import Event
from engine.settings import Settings
from streaming.processor import Record, decode

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> None:
    """Create the events, dead-letter and outbound topics if missing (a broker's auto-creation would pick
    its own partition count, and the history would not be kept)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers, client_id="vitrine-admin")
    await admin.start()
    try:
        wanted = [
            NewTopic(settings.kafka_events_topic, settings.kafka_partitions, settings.kafka_replication,
                     topic_configs={"retention.ms": str(settings.kafka_retention_ms)}),
            NewTopic(settings.kafka_dead_letter_topic, 1, settings.kafka_replication,
                     topic_configs={"retention.ms": "-1"}),
        ]
        if settings.kafka_outbound_topic:  # the broker's default retention: consumers act, then it may go
            wanted.append(NewTopic(settings.kafka_outbound_topic, settings.kafka_partitions,
                                   settings.kafka_replication))
        response = await admin.create_topics(wanted)
        for topic, code, *message in response.topic_errors:
            error = for_code(code)
            if code and error is not TopicAlreadyExistsError:
                raise error(f"cannot create topic {topic}: {message}")
    finally:
        await admin.close()


async def read_topic(settings: Settings, topic: str | None = None) -> AsyncIterator[list[Record]]:
    """Every record of the topic from offset 0 up to the end as it was when reading started, in
    batches; each partition in order (so each visitor's events in order)."""
    topic = topic or settings.kafka_events_topic
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                                max_poll_records=5000)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        listed = await consumer.end_offsets(partitions)
        # The end is the high watermark of the first fetch: ListOffsets alone is not enough, as
        # tansu answers it with the last record batch's base offset + 1.
        end: dict[TopicPartition, int] = {}
        remaining = set(partitions)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp in remaining - end.keys():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    end[tp] = max(highwater, listed[tp])
            batch = [Record(value=m.value, key=m.key, topic=m.topic, partition=m.partition, offset=m.offset)
                     for tp, messages in fetched.items() for m in messages if m.offset < end[tp]]
            for tp in list(remaining):
                if tp in end and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if batch:
                yield batch
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    if topic not in await consumer.topics():
        log.warning("topic %s does not exist (yet): no history", topic)
        return []
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def topic_events(settings: Settings) -> AsyncIterator[list[Event]]:
    """The topic's events from offset 0, in batches (for ``vitrine replay``). Records that are not
    valid events are skipped: live, the workers dead-lettered them."""
    skipped = 0
    async for records in read_topic(settings):
        events = []
        for record in records:
            try:
                events.append(decode(record.value))
            except ValueError:
                skipped += 1
        if events:
            yield events
    if skipped:
        log.warning("skipped %d records of %s that are not valid events", skipped, settings.kafka_events_topic)


def history(settings: Settings) -> Iterator[dict[str, Any]]:
    """The topic's events as the dicts ``engine.events.history.interactions`` takes, for ``vitrine train``
    (synchronous, like the embedded log reader)."""
    loop = asyncio.new_event_loop()
    batches = topic_events(settings)
    try:
        while True:
            try:
                batch = loop.run_until_complete(anext(batches))
            except StopAsyncIteration:
                break
            for event in batch:
                yield event.model_dump(exclude_none=True)
    finally:
        loop.run_until_complete(batches.aclose())
        loop.close()
