"""The API side of scale-out mode: accepted events go to the Kafka topic, keyed by visitor id.

``submit`` returns only once the brokers acknowledged every event (acks=all): that is the moment
an event is durable, as the fsync'd log is in embedded mode. Profiles are updated later by the
workers, so it returns False ("not applied yet").
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine.events.log import dump
from engine.events.schema import Event
from engine.ingest.writer import SinkUnavailable
from engine.settings import Settings
from streaming.topics import ensure_topics

log = logging.getLogger(__name__)


class KafkaSink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.kafka_events_topic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect now if the brokers answer; if not, the API still starts and retries on submit."""
        try:
            await self._connected()
        except SinkUnavailable as exc:
            log.warning("Kafka not reachable yet (%s); events get 503 until it is", exc)

    async def producer(self) -> AIOKafkaProducer:
        """The connected producer (``streaming.outbound`` shares it); raises ``SinkUnavailable``."""
        return await self._connected()

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_servers,
                    client_id="vitrine-api",
                    acks="all",
                    request_timeout_ms=int(self._settings.kafka_produce_timeout_s * 1000),
                )
                try:
                    async with asyncio.timeout(self._settings.kafka_produce_timeout_s):
                        await ensure_topics(self._settings)
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise SinkUnavailable(f"Kafka brokers {self._settings.kafka_brokers}: {exc!r}") from exc
                self._producer = producer
        return self._producer

    async def submit(self, events: list[Event]) -> bool:
        producer = await self._connected()
        try:
            async with asyncio.timeout(self._settings.kafka_produce_timeout_s):
                acks = [await producer.send(self._topic, value=dump(e), key=e.visitor_id.encode()) for e in events]
                await asyncio.gather(*acks)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise SinkUnavailable(f"the brokers did not acknowledge the events: {exc!r}") from exc
        return False

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
