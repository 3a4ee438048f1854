"""The agent and the batch processor without a broker: faust's ``agent.test_context()`` feeds the
agent directly; the profiles are applied to a real Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import redis.asyncio

from engine import tasks
from engine.store import keys
from engine.store.server import free_port, start_redis
from engine.runtime import Engine
from engine.profiles.codec import decode_dict
from streaming.app import StreamApp
from streaming.processor import BatchProcessor, BatchResult, DeadLetter, LocalApply, Record
from streaming.transport import ConsumerThread, fetch_max_wait_ms
from tests.conftest import make_settings
from tests.redis_clients import async_client


def view(event_id: str, visitor_id: str, item_id: str) -> bytes:
    now = time.time()
    return orjson.dumps({"event_id": event_id, "type": "product_view", "visitor_id": visitor_id,
                         "item_id": item_id, "ts": now, "rt": now})


def make_app(tmp_path: Path, redis_url: str, **settings: object) -> StreamApp:
    """A StreamApp in faust's test mode (no broker)."""
    app = StreamApp(make_settings(tmp_path, redis_url, kafka_brokers="127.0.0.1:1", **settings), redis_url,
                    store="memory://")
    app.finalize()
    app.flow_control.resume()
    return app


class Collected:
    """Stands in for the dead-letter topic."""

    def __init__(self) -> None:
        self.dead: list[DeadLetter] = []

    async def __call__(self, dead: list[DeadLetter]) -> None:
        self.dead.extend(dead)


def local_processor(engine: Engine, dead_letters: Collected, first_backoff_s: float = 0.05) -> BatchProcessor:
    """The worker's processor with the engine's applier in this process instead of an applier process."""
    return BatchProcessor(LocalApply(engine.applier, first_backoff_s=first_backoff_s), dead_letters,
                          first_backoff_s=first_backoff_s)


async def stored_visitor(redis_url: str, visitor_id: str) -> dict:
    client = async_client(redis_url)
    try:
        raw = await client.get(keys.visitor(visitor_id))
        return decode_dict(raw) or {}
    finally:
        await client.aclose()


def test_the_agent_applies_events_once_and_dead_letters_garbage(tmp_path: Path, redis_url: str) -> None:
    app = make_app(tmp_path, redis_url)

    async def run() -> None:
        engine = Engine(app.settings, redis_url, serve_models=False)
        dead = Collected()
        app.processor = local_processor(engine, dead)
        async with app.apply_events.test_context() as agent:
            await agent.put(view("e-1", "v-1", "85123A"), key=b"v-1")
            await agent.put(b"garbage", key=b"v-1")
            await agent.put(view("e-1", "v-1", "85123A"), key=b"v-1")  # redelivered
            await agent.put(view("e-2", "v-1", "71053"), key=b"v-1")
            results = list(agent.results.values())
        await engine.redis.aclose()
        assert sum(r.applied for r in results) == 2
        assert sum(r.duplicates for r in results) == 1
        assert [d.record.value for d in dead.dead] == [b"garbage"]
        assert dead.dead[0].error.startswith("not a valid event")
        profile = await stored_visitor(redis_url, "v-1")
        assert profile["si"] == ["71053", "85123A"] and profile["n"] == 1

    asyncio.run(run())


async def results(agent, count: int) -> list:
    """The agent's first ``count`` results (one per batch); the timeout is for a loaded machine."""
    async with asyncio.timeout(60):
        while len(agent.results) < count:
            await asyncio.sleep(0.01)
    return list(agent.results.values())


def test_one_batch_applies_its_good_events_once_and_dead_letters_the_bad(tmp_path: Path, redis_url: str) -> None:
    """Six records waiting together, taken as one batch: garbage, an event whose stored profile is
    corrupt, and two events each sent twice."""
    app = make_app(tmp_path, redis_url, kafka_batch_max=6)

    async def run() -> None:
        engine = Engine(app.settings, redis_url, serve_models=False)
        await engine.redis.set(keys.visitor("v-bad"), b"[not json")
        dead = Collected()
        app.processor = local_processor(engine, dead)
        first, last = view("e-1", "v-1", "85123A"), view("e-3", "v-1", "84406B")
        unprocessable = view("e-2", "v-bad", "71053")
        async with app.apply_events.test_context() as agent:
            sent = [await agent.put(value, key=key, wait=False) for key, value in [
                (b"v-1", first), (b"v-1", b"garbage"), (b"v-1", first), (b"v-bad", unprocessable), (b"v-1", last),
                (b"v-1", last)]]
            [result] = await results(agent, 1)
            assert all(event.message.acked for event in sent)  # applied or dead-lettered: committable
        await engine.redis.aclose()
        assert (result.applied, result.duplicates) == (2, 2)
        assert [d.record.value for d in dead.dead] == [b"garbage", unprocessable]  # in the partition's order
        assert dead.dead[0].error.startswith("not a valid event")
        assert dead.dead[1].error.startswith("processing failed: CorruptProfile")
        profile = await stored_visitor(redis_url, "v-1")
        assert profile["si"] == ["84406B", "85123A"]

    asyncio.run(run())


def test_a_batch_is_acknowledged_only_once_applied(tmp_path: Path) -> None:
    """Redis down: the batch waits, unacknowledged (so its offsets cannot be committed), then applies."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    app = make_app(tmp_path, url, kafka_batch_max=2)

    async def run() -> None:
        engine = Engine(app.settings, url, serve_models=False)
        app.processor = local_processor(engine, Collected(), first_backoff_s=0.02)
        server = None
        try:
            async with app.apply_events.test_context() as agent:
                sent = [await agent.put(view(f"e-{n}", "v-1", item), key=b"v-1", wait=False)
                        for n, item in enumerate(["85123A", "71053"])]
                await asyncio.sleep(0.3)
                assert not agent.results and not any(event.message.acked for event in sent)
                server = await asyncio.to_thread(start_redis, tmp_path / "late-redis", port=port, persist=False)
                [result] = await results(agent, 1)
                assert result.applied == 2 and all(event.message.acked for event in sent)
            assert (await stored_visitor(url, "v-1"))["si"] == ["71053", "85123A"]
        finally:
            await engine.redis.aclose()
            if server is not None:
                server.stop()

    asyncio.run(run())


class Gated(BatchProcessor):
    """The real processor, held before each batch until the test lets it go: shows what the agent does
    while a batch is being applied."""

    def __init__(self, applier, dead_letters) -> None:
        super().__init__(LocalApply(applier), dead_letters)
        self.started: list[list[bytes]] = []
        self.go = asyncio.Event()

    async def process(self, records: list[Record]):
        self.started.append([r.value for r in records])
        await self.go.wait()
        return await super().process(records)


def test_the_next_batches_are_taken_while_one_is_applied_and_applied_after_it(tmp_path: Path,
                                                                           redis_url: str) -> None:
    app = make_app(tmp_path, redis_url, kafka_batch_max=1)

    async def run() -> None:
        engine = Engine(app.settings, redis_url, serve_models=False)
        gated = Gated(engine.applier, Collected())
        app.processor = gated
        first, second, third = (view(f"e-{n}", "v-1", item) for n, item in enumerate(["85123A", "71053", "84406B"]))
        async with app.apply_events.test_context() as agent:
            sent = [await agent.put(value, key=b"v-1", wait=False) for value in (first, second, third)]
            async with asyncio.timeout(30):
                while not gated.started:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            # The first batch is being applied, the second is handed over to wait for its turn, and
            # the third is already taken from the stream: the agent holds it until one of the two is
            # done. They are applied in order (one visitor's events stay in order).
            assert gated.started == [[first], [second]]
            [actor] = agent._actors
            manual = actor.stream._next  # the agent's stream.noack()
            assert manual.current_event.value == third
            assert not any(event.message.acked for event in sent)
            gated.go.set()
            applied = await results(agent, 3)
            assert gated.started == [[first], [second], [third]]
            assert [r.applied for r in applied] == [1, 1, 1] and all(e.message.acked for e in sent)
        await engine.redis.aclose()
        assert (await stored_visitor(redis_url, "v-1"))["si"] == ["84406B", "71053", "85123A"]

    asyncio.run(run())


def test_a_batch_with_a_poison_event_applies_the_rest_in_order(tmp_path: Path, redis_url: str) -> None:
    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url), redis_url, serve_models=False)
        await engine.redis.set(keys.visitor("v-bad"), b"[not json")
        dead = Collected()
        records = [Record(view("e-1", "v-1", "85123A"), offset=1), Record(view("e-2", "v-bad", "71053"), offset=2),
                   Record(view("e-3", "v-1", "84406B"), offset=3), Record(view("e-4", "v-2", "85123A"), offset=4)]
        result = await local_processor(engine, dead).process(records)
        await engine.redis.aclose()
        assert (result.applied, [d.record.offset for d in dead.dead]) == (3, [2])
        assert dead.dead[0].error.startswith("processing failed: CorruptProfile")
        assert (await stored_visitor(redis_url, "v-1"))["si"] == ["84406B", "85123A"]
        assert (await stored_visitor(redis_url, "v-2"))["si"] == ["85123A"]

    asyncio.run(run())


def test_the_processor_waits_for_redis_instead_of_dropping_events(tmp_path: Path) -> None:
    """Redis down is not poison: the batch is retried until Redis is back, nothing dead-lettered."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    async def run() -> None:
        engine = Engine(make_settings(tmp_path, url), url, serve_models=False)
        dead = Collected()
        processing = asyncio.create_task(local_processor(engine, dead, first_backoff_s=0.02).process(
            [Record(view("e-1", "v-1", "85123A"))]))
        await asyncio.sleep(0.3)
        assert not processing.done()
        server = await asyncio.to_thread(start_redis, tmp_path / "late-redis", port=port, persist=False)
        try:
            result = await asyncio.wait_for(processing, 30)
            assert (result.applied, dead.dead) == (1, [])
            assert (await stored_visitor(url, "v-1"))["si"] == ["85123A"]
        finally:
            await engine.redis.aclose()
            server.stop()

    asyncio.run(run())


def test_a_batch_whose_apply_fails_unexpectedly_is_applied_again_not_dropped() -> None:
    tried: list[list[Record]] = []

    async def apply(records: list[Record]) -> BatchResult:
        tried.append(records)
        if len(tried) == 1:
            raise RuntimeError("a bug on the apply path")
        return BatchResult(applied=len(records))

    failed_before = tasks.failures("stream-batch")
    result = asyncio.run(BatchProcessor(apply, Collected(), first_backoff_s=0.01).process([Record(b"{}")]))
    assert result.applied == 1 and len(tried) == 2
    assert tasks.failures("stream-batch") == failed_before + 1


def test_the_fetch_wait_setting_reaches_the_worker_consumer(tmp_path: Path, redis_url: str) -> None:
    async def run() -> None:
        app = make_app(tmp_path, redis_url, kafka_fetch_max_wait_ms=7)
        assert fetch_max_wait_ms(app) == 7
        thread = app.consumer._new_consumer_thread()
        assert isinstance(thread, ConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        assert consumer._fetch_max_wait_ms == 7  # what AIOKafkaConsumer.start() gives its Fetcher

    asyncio.run(run())


def test_a_key_of_the_wrong_type_is_dead_lettered_not_retried(tmp_path: Path, redis_url: str) -> None:
    """WRONGTYPE is a ResponseError about the data: the partition must keep moving."""
    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url), redis_url, serve_models=False)
        await engine.redis.rpush(keys.visitor("v-list"), "not a profile")
        dead = Collected()
        records = [Record(view("e-1", "v-list", "85123A"), offset=1), Record(view("e-2", "v-1", "71053"), offset=2)]
        result = await asyncio.wait_for(local_processor(engine, dead, first_backoff_s=0.02).process(records), 30)
        await engine.redis.aclose()
        assert (result.applied, [d.record.offset for d in dead.dead]) == (1, [1])
        assert "WRONGTYPE" in dead.dead[0].error

    asyncio.run(run())


def test_a_redis_refusing_writes_is_waited_out_not_dead_lettered(tmp_path: Path, redis_url: str) -> None:
    """OOM (like MISCONF, READONLY, BUSY) is a ResponseError about the server, not the event."""
    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url), redis_url, serve_models=False)
        admin = async_client(redis_url)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
        dead = Collected()
        try:
            processing = asyncio.create_task(local_processor(engine, dead, first_backoff_s=0.02).process(
                [Record(view("e-1", "v-oom", "85123A"))]))
            await asyncio.sleep(0.3)
            assert not processing.done() and dead.dead == []
            await admin.config_set("maxmemory", 0)
            result = await asyncio.wait_for(processing, 30)
            assert (result.applied, dead.dead) == (1, [])
            assert (await stored_visitor(redis_url, "v-oom"))["si"] == ["85123A"]
        finally:
            await admin.config_set("maxmemory", 0)
            await admin.aclose()
            await engine.redis.aclose()

    asyncio.run(run())


def test_a_worker_counts_experiments_of_its_rules_file_only(tmp_path: Path, redis_url: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("experiments:\n  home-test:\n    placement: home\n    variants:\n"
                     "      - {name: a, weight: 1}\n      - {name: b, weight: 1}\n")

    def shown(event_id: str, rid: str) -> bytes:
        now = time.time()
        return orjson.dumps({"event_id": event_id, "type": "block_impression", "visitor_id": "v-x", "ts": now,
                             "rt": now, "properties": {"block_id": "reco:home", "recommendation_id": rid}})

    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url, rules_file=rules), redis_url, serve_models=False)
        await engine.start()
        try:
            dead = Collected()
            result = await local_processor(engine, dead).process(
                [Record(shown("x-1", "abc.home-test.a")), Record(shown("x-2", "abc.invented.a")),
                 Record(shown("x-3", "abc.home-test.invented"))])
            assert (result.applied, dead.dead) == (3, [])
            counters = await engine.redis.zrange("xp:home-test", 0, -1, withscores=True)
            assert counters == [(b"a:impressions", 1.0), (b"a:visitors", 1.0)]
            assert await engine.redis.exists("xp:invented") == 0
        finally:
            await engine.stop()

    asyncio.run(run())


def test_a_worker_folds_consent_as_the_api_does(tmp_path: Path, redis_url: str) -> None:
    """Opt-in reaches the worker through its settings; GPC through the event itself."""
    def event(event_id: str, visitor_id: str, **fields: object) -> Record:
        now = time.time()
        return Record(orjson.dumps({"event_id": event_id, "visitor_id": visitor_id, "ts": now, "rt": now,
                                    "type": "product_view", **fields}))

    async def run() -> None:
        engine = Engine(make_settings(tmp_path, redis_url, consent_required=True), redis_url, serve_models=False)
        dead = Collected()
        result = await local_processor(engine, dead).process([
            event("o-1", "v-o", item_id="85123A"),
            event("o-2", "v-o", type="consent", properties={"granted": True}),
            event("o-3", "v-o", item_id="71053"),
            event("g-1", "v-g", type="consent", properties={"granted": True}),
            event("g-2", "v-g", item_id="85123A", gpc=True),
            event("n-1", "v-n", item_id="85123A"),
        ])
        assert (await engine.redis.exists(keys.visitor("v-n"))) == 0
        await engine.redis.aclose()
        assert (result.applied, dead.dead) == (6, [])
        assert (await stored_visitor(redis_url, "v-o"))["si"] == ["71053"]
        opted_out = await stored_visitor(redis_url, "v-g")  # granted, then browsed with GPC on
        assert opted_out["k"] is False and "si" not in opted_out and "n" not in opted_out

    asyncio.run(run())
