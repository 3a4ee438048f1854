"""Kafka mode end to end: API replicas produce, ``vitrine worker`` processes apply (real broker,
real Redis, real worker processes)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli.quality import train
from engine.store import keys
from engine.tenants import config as tenants
from engine.events.log import read_raw
from engine.events.history import interactions
from engine.store.server import free_port
from engine.settings import Settings, as_environment
from engine.profiles.codec import decode_dict
from streaming.devstack import ROOT, VitrineProcess
from streaming.topics import history
from tests.conftest import ADMIN, make_settings
from tests.streaming.conftest import wait_until
from tests.redis_clients import sync_client


def visitor(r: redis.Redis, visitor_id: str) -> dict:
    raw = r.get(keys.visitor(visitor_id))
    return decode_dict(raw) or {}


def cart_adds(visitors: int, per_visitor: int) -> list[dict]:
    """``per_visitor`` adds of one item to the cart by each of ``visitors`` visitors, interleaved."""
    return [{"event_id": f"e-{i}", "type": "add_to_cart", "visitor_id": f"v-{i % visitors}", "item_id": "85123A"}
            for i in range(visitors * per_visitor)]


def carted(r: redis.Redis, visitors: int) -> int:
    """The cart adds applied so far, over the visitors of ``cart_adds``."""
    return sum(visitor(r, f"v-{v}").get("ct", {}).get("85123A", 0) for v in range(visitors))


def test_events_through_the_api_reach_profiles_and_recommendations(kafka_settings: Settings, catalogue: None,
                                                                   start_worker) -> None:
    start_worker()
    r = sync_client(kafka_settings.redis_url)
    with TestClient(create_app(kafka_settings)) as api:
        batch = [{"event_id": f"e-{i}", "type": "product_view", "visitor_id": "v-1", "item_id": item}
                 for i, item in enumerate(["85123A", "71053", "84406B"])]
        response = api.post("/v1/events", json={"events": batch})
        assert response.status_code == 200, response.text
        assert response.json()["profiles_updated"] is False  # the workers apply them
        wait_until(lambda: len(visitor(r, "v-1").get("si", [])) == 3, what="the worker to apply 3 views")
        assert visitor(r, "v-1")["si"] == ["84406B", "71053", "85123A"]
        recent = api.get("/v1/recommendations", params={"placement": "recent", "visitor_id": "v-1"}).json()
        assert [i["item_id"] for i in recent["items"]] == ["84406B", "71053", "85123A"]
        # The worker serves the model too, so it stored the visitor's for-you list: the API
        # serves it, and it is the list the API computes itself.
        wait_until(lambda: r.exists(keys.for_you("v-1")), what="the worker to store the for-you list")
        home = api.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v-1"}).json()
        r.delete(keys.for_you("v-1"))
        live = api.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v-1"}).json()
        assert home["items"] == live["items"] and home["items"][0]["reason"].startswith("because_you_viewed:")


def test_an_erase_reaches_the_events_still_in_the_topic(kafka_settings: Settings, catalogue: None,
                                                        start_worker) -> None:
    """Events accepted before an erase and not yet applied (no worker was running) are dropped when a
    worker reads them; the person's events accepted after it, and everyone else's, apply."""
    r = sync_client(kafka_settings.redis_url)
    with TestClient(create_app(kafka_settings)) as api:
        before = [{"event_id": f"er-{i}", "type": "product_view", "visitor_id": visitor_id, "item_id": item}
                  for i, (visitor_id, item) in enumerate([("v-gone", "85123A"), ("v-gone", "71053"),
                                                          ("v-kept", "84406B")])]
        assert api.post("/v1/events", json={"events": before}).status_code == 200
        assert api.delete("/v1/people/v-gone", headers=ADMIN).status_code == 200
        after = {"event_id": "er-9", "type": "product_view", "visitor_id": "v-gone", "item_id": "22423"}
        assert api.post("/v1/events", json={"events": [after]}).status_code == 200
    worker = start_worker()
    wait_until(lambda: visitor(r, "v-gone").get("si") == ["22423"], what="the event after the erase to apply")
    assert visitor(r, "v-kept").get("si") == ["84406B"]
    dropped = lambda: sum(map(int, re.findall(r"dropped (\d+) events of people erased", worker.output())))  # noqa: E731
    wait_until(lambda: dropped() == 2, what="the worker to say it dropped both")


def test_a_worker_for_one_shop_applies_its_topic_under_its_prefix(kafka_settings: Settings, tmp_path) -> None:  # noqa: ANN001
    """`VITRINE_TENANT=shop-a vitrine worker`: shop-a's topic, shop-a's keys, in the Redis it shares."""
    shops = {tenant: {"admin_key": f"admin-key-of-{tenant}-0123", "kafka_events_topic": f"{tenant}-events",
                      "kafka_group_id": f"{tenant}-workers"} for tenant in ("shop-a", "shop-b")}
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(orjson.dumps({"tenants": shops}).decode())
    base = kafka_settings.model_copy(update={"tenants_file": tenants_file})
    shop_a = tenants.load(base)["shop-a"]
    worker = VitrineProcess(["worker", "--loglevel", "info"], base.model_copy(update={"tenant": "shop-a"}),
                            tmp_path / "worker.log")
    try:
        asyncio.run(produce(shop_a, [(b"v-t", event_bytes("t-1", "v-t", "85123A"))]))
        r = sync_client(kafka_settings.redis_url)
        wait_until(lambda: r.exists("t.shop-a:v:{v-t}"), what="shop-a's worker to apply its event")
        assert not r.exists(keys.visitor("v-t")) and not r.exists("t.shop-b:v:{v-t}")
        said = worker.output().splitlines()
        faust_lines = [line for line in said if "[^Worker]" in line or "[^--Consumer]" in line]
        assert faust_lines and all("[shop-a]" in line for line in faust_lines)
        assert all("[shop-a]" in line for line in said if "engine.runtime:" in line)  # the applier process's
    finally:
        worker.stop()


def assigned_partitions(worker: VitrineProcess, topic: str) -> set[int]:
    """The last assignment faust logged for ``topic`` (its "Topic Partition Set" table)."""
    found = re.findall(rf"\| {re.escape(topic)}\s+\| \{{([\d, -]*)\}}", worker.output())
    return partition_set(found[-1]) if found else set()


def partition_set(text: str) -> set[int]:
    """faust's notation: ``0, 2`` or a range ``0-3`` (``{0-1}`` is partitions 0 and 1)."""
    partitions: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        partitions.update(range(int(first), int(last or first) + 1))
    return partitions


def test_faust_partition_sets_are_read_with_their_ranges() -> None:
    assert partition_set("0-1") == {0, 1} and partition_set("0, 2") == {0, 2}
    assert partition_set("0-1, 3") == {0, 1, 3} and partition_set("") == set()


def test_two_workers_share_the_partitions(kafka_settings: Settings, start_worker) -> None:
    first, second = start_worker(), start_worker()
    r = sync_client(kafka_settings.redis_url)
    with TestClient(create_app(kafka_settings)) as api:
        batch = [{"event_id": f"e-{i}", "type": "add_to_cart", "visitor_id": f"v-{i % 40}", "item_id": "85123A"}
                 for i in range(200)]
        assert api.post("/v1/events", json={"events": batch}).status_code == 200
        wait_until(lambda: all(visitor(r, f"v-{v}").get("ct") == {"85123A": 5} for v in range(40)),
                   what="the workers to apply every event")
    topic = kafka_settings.kafka_events_topic

    def shared() -> bool:
        mine, theirs = assigned_partitions(first, topic), assigned_partitions(second, topic)
        return bool(mine and theirs and mine.isdisjoint(theirs)
                    and mine | theirs == set(range(kafka_settings.kafka_partitions)))

    wait_until(shared, what="each worker to own a disjoint share of the partitions")


def test_workers_joining_mid_stream_lose_nothing_and_count_nothing_twice(
        kafka_settings: Settings, start_worker) -> None:
    """Each join revokes every partition mid-stream: the events delivered but not applied yet must
    be applied (or redelivered) and the rebalance must complete, not wait for them forever."""
    visitors, per_visitor = 40, 20
    events = [{"event_id": f"e-{i}", "type": "add_to_cart", "visitor_id": f"v-{i % visitors}", "item_id": "85123A"}
              for i in range(visitors * per_visitor)]
    r = sync_client(kafka_settings.redis_url)
    workers = [start_worker()]
    with TestClient(create_app(kafka_settings)) as api:
        for n, start in enumerate(range(0, len(events), 20)):
            assert api.post("/v1/events", json={"events": events[start:start + 20]}).status_code == 200
            if n in (8, 24):
                workers.append(start_worker())
            time.sleep(0.05)
    wait_until(lambda: all(visitor(r, f"v-{v}").get("ct") == {"85123A": per_visitor} for v in range(visitors)),
               what="the workers to apply every event once")
    assert not any("Task timed out" in worker.output() for worker in workers)


def test_a_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
        kafka_settings: Settings, start_worker) -> None:
    visitors, per_visitor = 40, 30
    events = cart_adds(visitors, per_visitor)
    r = sync_client(kafka_settings.redis_url)
    first = start_worker()
    with TestClient(create_app(kafka_settings)) as api:
        half = len(events) // 2
        for start in range(0, half, 20):
            assert api.post("/v1/events", json={"events": events[start:start + 20]}).status_code == 200
        wait_until(lambda: carted(r, visitors) >= 100, what="the first worker to apply some events")
        first.kill()  # SIGKILL: no commit, no goodbye; its uncommitted events will be redelivered
        assert 0 < carted(r, visitors) <= half
        for start in range(half, len(events), 20):
            assert api.post("/v1/events", json={"events": events[start:start + 20]}).status_code == 200
    second = start_worker()
    wait_until(lambda: carted(r, visitors) == len(events), what="the restarted worker to catch up")
    wait_until(lambda: "redelivered" in second.output(), what="the redelivered events to be skipped")
    for v in range(visitors):
        assert visitor(r, f"v-{v}")["ct"] == {"85123A": per_visitor}


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.kafka_events_topic, value=value, key=key)
    finally:
        await producer.stop()


async def dead_letters(settings: Settings) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(settings.kafka_dead_letter_topic, bootstrap_servers=settings.kafka_servers,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=1000)
        return [(m.value, dict(m.headers)) for messages in fetched.values() for m in messages]
    finally:
        await consumer.stop()


def event_bytes(event_id: str, visitor_id: str, item_id: str, **extra: object) -> bytes:
    return orjson.dumps({"event_id": event_id, "type": "product_view", "visitor_id": visitor_id,
                         "item_id": item_id, "ts": time.time(), "rt": time.time(), **extra})


def test_poison_events_go_to_the_dead_letter_topic_and_the_partition_moves_on(
        kafka_settings: Settings, start_worker) -> None:
    r = sync_client(kafka_settings.redis_url)
    r.set(keys.visitor("v-corrupt"), b"{not json")  # its events cannot be processed
    not_json, bad_event = b"\xff\x00 not json", orjson.dumps({"event_id": "x", "type": "teleport"})
    unprocessable = event_bytes("e-3", "v-corrupt", "71053")
    asyncio.run(produce(kafka_settings, [
        (b"v-1", event_bytes("e-1", "v-1", "85123A")),
        (b"v-1", not_json),
        (b"v-1", bad_event),
        (b"v-corrupt", unprocessable),
        (b"v-1", event_bytes("e-2", "v-1", "84406B")),
    ]))
    start_worker()
    wait_until(lambda: visitor(r, "v-1").get("si") == ["84406B", "85123A"], what="the good events to apply")
    dead: list = []

    def three_dead_letters() -> bool:
        dead[:] = asyncio.run(dead_letters(kafka_settings))
        return len(dead) >= 3

    wait_until(three_dead_letters, what="three dead letters")
    by_payload = {value: headers for value, headers in dead}
    assert set(by_payload) == {not_json, bad_event, unprocessable}  # the original bytes, unchanged
    assert by_payload[not_json]["vitrine.error"].startswith(b"not a valid event: ValidationError")
    assert b"type" in by_payload[bad_event]["vitrine.error"]
    assert by_payload[unprocessable]["vitrine.error"].startswith(b"processing failed: CorruptProfile")
    assert by_payload[unprocessable]["vitrine.source"].startswith(kafka_settings.kafka_events_topic.encode())
    assert r.get(keys.visitor("v-corrupt")) == b"{not json"


def test_without_a_broker_events_get_a_503_naming_the_problem(data_dir, redis_url: str) -> None:
    settings = make_settings(data_dir, redis_url, kafka_brokers=f"127.0.0.1:{free_port()}",
                             kafka_produce_timeout_s=0.5)
    with TestClient(create_app(settings)) as api:
        response = api.post("/v1/events", json={"event_id": "e-1", "type": "product_view", "visitor_id": "v-1",
                                                "item_id": "85123A"})
        assert response.status_code == 503
        assert response.json()["error"].startswith("events not stored, retry with the same event ids")
        bad = api.post("/v1/events", json={"event_id": "e-2", "type": "product_view", "visitor_id": "v-1"})
        assert bad.status_code == 422  # bad input is still a 4xx, the broker is not asked


def test_train_reads_the_same_history_from_the_topic_as_from_the_embedded_log(
        kafka_settings: Settings, client: TestClient) -> None:
    from tests.streaming.test_replay import shop_events

    events = shop_events()  # with logins: posted with the admin key, as a shop's backend would
    with TestClient(create_app(kafka_settings)) as api:  # no worker needed: training reads the topic
        assert api.post("/v1/events", json={"events": events}, headers=ADMIN).status_code == 200
    assert client.post("/v1/events", json={"events": events}, headers=ADMIN).status_code == 200
    embedded = client.app.state.settings

    def rows(settings: Settings) -> list:
        source = history(settings) if settings.mode == "kafka" else read_raw(settings.log_dir)
        return sorted(interactions(source))

    assert rows(kafka_settings) == rows(embedded) and len(rows(embedded)) > 50
    version = train(kafka_settings)
    meta = orjson.loads((kafka_settings.models_dir / version / "meta.json").read_bytes())
    assert meta["data"]["events"] == len(rows(embedded))


def test_import_in_kafka_mode_sends_the_history_to_the_topic(kafka_settings: Settings, demo_files, tmp_path,
                                                            start_worker) -> None:
    lines = demo_files[1].read_text().splitlines()[:301]
    csv = tmp_path / "events.csv"
    csv.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "api.cli", "import", "--events", str(csv)],
                          env=as_environment(kafka_settings), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "300/300 event lines loaded" in done.stdout and "sent to topic" in done.stdout
    sent = int(done.stdout.split(" events sent")[0].split()[-1])
    assert len(list(history(kafka_settings))) == sent  # what `vitrine train` reads
    start_worker()
    r = sync_client(kafka_settings.redis_url)
    customers = {line.split(",")[2] for line in lines[1:] if line.split(",")[2]}
    wait_until(lambda: all(r.get(keys.customer(c)) for c in customers), what="the worker to apply the import")
