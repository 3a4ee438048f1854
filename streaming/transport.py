"""faust's aiokafka transport with the worker consumer's fetch wait as a setting.

faust-streaming builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded. Against a
broker that answers a fetch only when that wait expires (tansu, the test broker) every event then
waits up to 1.5 s; against Kafka it bounds how long an idle fetch is parked. This transport is
faust's own, with the consumer thread overriding just that value from
``VITRINE_KAFKA_FETCH_MAX_WAIT_MS``. It is registered under the URL scheme ``vitrine://`` through
faust's ``faust.transports`` entry point (pyproject.toml), so nothing is patched at import time.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "vitrine"
DEFAULT_FETCH_MAX_WAIT_MS = 1500  # faust's value, kept when the app does not say otherwise


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - aiokafka changed
            raise RuntimeError(f"aiokafka {aiokafka.__version__} no longer takes the fetch wait this way")
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, i.e. after this returns.
        consumer._fetch_max_wait_ms = fetch_max_wait_ms(self.app)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def fetch_max_wait_ms(app: Any) -> int:
    return int(getattr(app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS))


def broker_urls(servers: list[str]) -> list[str]:
    return [f"{SCHEME}://{server}" for server in servers]
