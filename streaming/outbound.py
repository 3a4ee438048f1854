"""The outbound topic's producer (``engine.triggers.outbound.Publisher``): trigger deliveries to
``VITRINE_KAFKA_OUTBOUND_TOPIC``, keyed by person id, through the API's own producer (acks=all)."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError

from engine.ingest.writer import SinkUnavailable
from engine.settings import Settings
from engine.triggers.outbound import OutboundRecord, PublishFailed
from streaming.producer import KafkaSink


class TopicPublisher:
    def __init__(self, sink: KafkaSink, settings: Settings) -> None:
        self._sink = sink
        self._topic = settings.kafka_outbound_topic
        self.timeout_s = settings.kafka_produce_timeout_s

    async def publish(self, records: list[OutboundRecord]) -> None:
        try:
            producer = await self._sink.producer()
            async with asyncio.timeout(self.timeout_s):
                acks = [await producer.send(self._topic, value=r.value, key=r.key, headers=r.headers)
                        for r in records]
                await asyncio.gather(*acks)
        except (SinkUnavailable, KafkaError, OSError, TimeoutError) as exc:
            raise PublishFailed(f"{self._topic}: {exc!r}") from exc
