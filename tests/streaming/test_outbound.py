"""The outbound topic against the real test broker: a trigger's delivery is one record on
``VITRINE_KAFKA_OUTBOUND_TOPIC``, keyed by person id, carrying the signed document the webhook
would get; produced again after a crash, it carries the same idempotency key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi.testclient import TestClient

from api.app import create_app
from engine.runtime import Engine
from engine.settings import Settings
from engine.triggers import keys
from engine.triggers.outbound import record
from engine.triggers.webhook import HEADER, verify
from engine.store import keys as store_keys
from engine.store.server import free_port
from streaming.devstack import TansuBroker, VitrineProcess
from streaming.outbound import TopicPublisher
from streaming.producer import KafkaSink
from tests.conftest import ADMIN, make_settings
from tests.engine.triggers.test_delivery import Clock, event, opt_in, stats
from tests.streaming.conftest import FAST_GROUP, wait_until
from tests.redis_clients import is_cluster_url, sync_client

SECRET = "whsec-topic-0123456789abcdef"
RULES = """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload: {title: "Your cart", body: "{cart_items} items are waiting"}
"""


def outbound_settings(redis_url: str, broker: TansuBroker, tmp_path: Path) -> Settings:
    (tmp_path / "rules.yaml").write_text(RULES)
    # No webhook URL: the topic instead of the webhook; the secret signs the records.
    return make_settings(tmp_path, redis_url, kafka_brokers=broker.address, **FAST_GROUP,
                         rules_file=tmp_path / "rules.yaml", trigger_webhook_secret=SECRET)


async def read_all(settings: Settings, expected: int) -> list[Any]:
    """Every record of the outbound topic: at least ``expected``, then one more fetch for extras."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    try:
        topic = settings.kafka_outbound_topic
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        got: list[Any] = []
        deadline = time.monotonic() + 30  # generous: a loaded machine, not a speed claim
        while len(got) < expected and time.monotonic() < deadline:
            got += [m for ms in (await consumer.getmany(timeout_ms=500)).values() for m in ms]
        got += [m for ms in (await consumer.getmany(timeout_ms=1000)).values() for m in ms]
        return got
    finally:
        await consumer.stop()


def test_a_delivery_is_one_signed_record_keyed_by_person(redis_url: str, broker: TansuBroker, tmp_path: Path) -> None:
    settings = outbound_settings(redis_url, broker, tmp_path)
    t0 = time.time()
    clock = Clock(t0)

    async def main() -> tuple[list[Any], bytes]:
        engine = Engine(settings, redis_url, serve_models=False)
        await engine.start()
        sink = KafkaSink(settings)
        await sink.start()
        publisher = TopicPublisher(sink, settings)
        runner = engine.trigger_runner(clock=clock, publisher=publisher)
        try:
            await engine.applier.apply([
                opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1", quantity=2),
                opt_in("v2", t0), event("login", "v2", t0, customer_id="c2"),
                event("add_to_cart", "v2", t0 + 2, item_id="i1")])
            clock.now = t0 + 61 * 60
            assert await runner.run_due() == 2
            # One process takes a record, produces it and dies before marking it done.
            taken = await runner.topic.queue.claim(clock.now, runner.topic.lease_s, 1)
            doc = orjson.loads(taken[0][1])
            await publisher.publish([record(doc, SECRET, time.time())])
            assert await runner.tick() == (0, 1)  # the other one (its claim holds the first)
            clock.now += runner.topic.lease_s + 1
            assert await runner.tick() == (0, 1)  # the lease ran out: produced again
            assert await runner.tick() == (0, 0)
            return await read_all(settings, 3), (doc["customer_id"] or doc["visitor_id"]).encode()
        finally:
            await runner.stop()
            await engine.stop()
            await sink.close()

    records, crashed = asyncio.run(main())
    assert len(records) == 3
    client = sync_client(redis_url)
    stream = keys.names(is_cluster_url(redis_url)).deliveries
    delivered = {orjson.loads(f[b"doc"])["id"]: orjson.loads(f[b"doc"]) for _, f in client.xrange(stream)}
    client.close()
    by_person: dict[bytes, list[Any]] = {}
    for message in records:
        by_person.setdefault(message.key, []).append(message)
    assert sorted(by_person) == [b"c2", b"v1"]  # the customer once known, else the visitor
    assert sorted(len(r) for r in by_person.values()) == [1, 2] and len(by_person[crashed]) == 2
    for message in records:
        headers = dict(message.headers)
        doc = orjson.loads(message.value)
        assert verify(SECRET, headers[HEADER].decode(), message.value, time.time())
        assert headers["Idempotency-Key"].decode() == doc["id"]
        assert doc == delivered[doc["id"]]  # the pull API's document, the webhook's body
    first, again = by_person[crashed]
    assert first.value == again.value  # the same document, the same id: consumers deduplicate
    assert orjson.loads(by_person[b"v1"][0].value)["payload"]["body"] == "2 items are waiting"
    assert orjson.loads(by_person[b"c2"][0].value)["customer_id"] == "c2"
    assert stats(redis_url) == {"sent:deliveries": 2, "topic:produced": 2}


def test_the_api_produces_a_catalogue_trigger_to_the_topic(redis_url: str, broker: TansuBroker,
                                                            tmp_path: Path) -> None:
    """Kafka mode end to end: the consent event through the API and a worker, a watch, a price drop
    by ``PUT /v1/items``; the API's runner produces the one record."""
    (tmp_path / "rules.yaml").write_text(RULES + "  drop:\n    kind: price_drop\n    channel: email\n    control: 0\n")
    settings = make_settings(tmp_path, redis_url, kafka_brokers=broker.address, **FAST_GROUP,
                             rules_file=tmp_path / "rules.yaml", trigger_webhook_secret=SECRET, trigger_poll_s=0.2)
    worker = VitrineProcess(["worker", "--loglevel", "info"], settings, tmp_path / "worker.log")
    client = sync_client(redis_url)
    try:
        with TestClient(create_app(settings)) as api:
            assert api.put("/v1/items", headers=ADMIN, json={"items": [
                {"item_id": "SKU-K", "title": "Kettle", "price": 20.0}]}).status_code == 200
            r = api.post("/v1/events", json={"event_id": "optin", "type": "consent", "visitor_id": "v-k",
                                             "properties": {"purpose": "email", "granted": True}})
            assert r.status_code == 200, r.text
            assert api.put("/v1/visitors/v-k/preferences", json={"watches": ["SKU-K"]}).status_code == 200
            wait_until(lambda: client.exists(store_keys.visitor("v-k")), what="the worker to apply the consent")
            assert api.put("/v1/items", headers=ADMIN, json={"items": [
                {"item_id": "SKU-K", "price": 15.0}]}).status_code == 200
            wait_until(lambda: stats(redis_url, "drop").get("topic:produced"), what="the record to be produced")
        records = asyncio.run(read_all(settings, 1))
    finally:
        worker.stop()
        client.close()
    assert [(m.key, orjson.loads(m.value)["context"]["price"]) for m in records] == [(b"v-k", 15.0)]
    assert verify(SECRET, dict(records[0].headers)[HEADER].decode(), records[0].value, time.time())


def test_brokers_that_do_not_answer_keep_the_record_queued(redis_url: str, broker: TansuBroker,
                                                           tmp_path: Path) -> None:
    settings = outbound_settings(redis_url, broker, tmp_path)
    nobody = settings.model_copy(update={"kafka_brokers": f"127.0.0.1:{free_port()}", "kafka_produce_timeout_s": 1.0})
    t0 = time.time()
    clock = Clock(t0)

    async def main() -> list[Any]:
        engine = Engine(settings, redis_url, serve_models=False)
        await engine.start()
        down, up = KafkaSink(nobody), KafkaSink(settings)
        runner = engine.trigger_runner(clock=clock, publisher=TopicPublisher(down, nobody))
        try:
            await engine.applier.apply([opt_in("v1", t0), event("add_to_cart", "v1", t0 + 1, item_id="i1")])
            clock.now = t0 + 61 * 60
            assert await runner.tick() == (1, 0)
            assert stats(redis_url) == {"sent:deliveries": 1, "topic:retried": 1}
            assert await runner.tick() == (0, 0)  # within the lease: not tried again yet
            runner.topic.publisher = TopicPublisher(up, settings)  # the brokers are back
            clock.now += runner.topic.lease_s + 1
            assert await runner.tick() == (0, 1)
            return await read_all(settings, 1)
        finally:
            await runner.stop()
            await engine.stop()
            await down.close()
            await up.close()

    records = asyncio.run(main())
    assert [m.key for m in records] == [b"v1"]
    assert stats(redis_url) == {"sent:deliveries": 1, "topic:retried": 1, "topic:produced": 1}
