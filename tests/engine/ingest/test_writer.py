"""The embedded apply path (engine.ingest.writer): one writer per process, a backlog that drains, and
nothing out of it ever turns into a 500. Real Redis and real HTTP throughout."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
import redis

from api.app import create_app
from engine.ingest.apply import ApplyContention, EventApplier
from engine.events.log import EventLog
from engine.events.schema import Event
from engine import tasks
from engine.ingest.writer import TASK_NAME, EmbeddedSink
from engine.profiles.shapes import ProfileConfig, VisitorProfile
from engine.store.server import free_port, start_redis
from engine.store.connect import connect
from engine.ranking.trending import TrendingClock
from tests.conftest import LiveServer, make_settings

ITEM = "85123A"


def cart_event(event_id: str, visitor: str, quantity: int = 1) -> dict:
    return {"event_id": event_id, "type": "add_to_cart", "visitor_id": visitor, "item_id": ITEM,
            "quantity": quantity}


def stored(redis_url: str, visitor: str) -> VisitorProfile:
    with redis.Redis.from_url(redis_url) as client:
        return VisitorProfile.decode(client.get(f"v:{{{visitor}}}"))


def wait_drained(sink: EmbeddedSink, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while sink.backlog and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.backlog == 0


async def post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=len(bodies))) as http:
        return await asyncio.gather(*(http.post("/v1/events", json=body) for body in bodies))


def test_concurrent_events_for_one_visitor_all_count_once(data_dir: Path, redis_url: str) -> None:
    """60 simultaneous requests for one visitor: every one is a 200, the cart holds exactly 60,
    and the writer merged them into fewer apply calls than requests."""
    app = create_app(make_settings(data_dir, redis_url))
    with LiveServer(app) as server:
        applier = app.state.engine.applier
        calls = 0
        real_apply = applier.apply

        async def counting(events: list[Event]):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real_apply(events)

        applier.apply = counting
        posts = 60
        responses = asyncio.run(post_all(server.url, [cart_event(f"c{i}", "v-busy") for i in range(posts)]))
        assert [r.status_code for r in responses] == [200] * posts, [r.text for r in responses if r.status_code != 200]
        wait_drained(app.state.sink)
        assert stored(redis_url, "v-busy").cart == {ITEM: posts}
        assert calls < posts
        # The same 60 again (client retries): nothing changes.
        responses = asyncio.run(post_all(server.url, [cart_event(f"c{i}", "v-busy") for i in range(posts)]))
        assert all(r.status_code == 200 for r in responses)
        wait_drained(app.state.sink)
        assert stored(redis_url, "v-busy").cart == {ITEM: posts}


def test_a_stalled_redis_then_recovery_drains_the_whole_backlog(data_dir: Path, redis_url: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Redis stalls (CLIENT PAUSE) longer than the client's socket timeout while 6,000 events for
    300 visitors arrive: every request is a 200 within the apply budget; once Redis answers, the
    whole backlog is applied (more than one apply call's worth), each count exact. The writer's
    failed tries are counted, and logged once."""
    settings = make_settings(data_dir, redis_url, redis_socket_timeout_s=0.3)
    app = create_app(settings)
    visitors = [f"v-stall-{i}" for i in range(300)]
    failures = tasks.failures(TASK_NAME)
    with LiveServer(app) as server, redis.Redis.from_url(redis_url) as admin, \
            caplog.at_level(logging.WARNING, logger="engine.tasks"):
        sink = app.state.sink
        admin.execute_command("CLIENT", "PAUSE", 2500, "ALL")
        bodies = [{"events": [cart_event(f"s{b}-{i}", visitors[(b * 250 + i) % 300], quantity=1 + b % 3)
                              for i in range(250)]} for b in range(24)]
        responses = asyncio.run(post_all(server.url, bodies))
        assert [r.status_code for r in responses] == [200] * len(bodies)
        assert not any(r.json()["profiles_updated"] for r in responses)
        assert sink.backlog == 6000
        wait_drained(sink)
    expected: dict[str, int] = {}
    for body in bodies:
        for event in body["events"]:
            expected[event["visitor_id"]] = expected.get(event["visitor_id"], 0) + event["quantity"]
    assert {v: stored(redis_url, v).cart.get(ITEM, 0) for v in visitors} == expected
    assert app.state.sink.writer.skipped == 0 and app.state.sink.writer.spilled == 0
    assert tasks.failures(TASK_NAME) > failures
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.getMessage().startswith(TASK_NAME)] == [
        f"{TASK_NAME} failed", f"{TASK_NAME} recovered after {tasks.failures(TASK_NAME) - failures} failed attempts"]


def test_a_corrupt_profile_is_skipped_and_blocks_no_one(data_dir: Path, redis_url: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set("v:{v-corrupt}", b"\x07")  # a MessagePack integer, not a profile
    app = create_app(make_settings(data_dir, redis_url))
    with LiveServer(app) as server, caplog.at_level(logging.ERROR, logger="engine.ingest.writer"):
        sink = app.state.sink
        batch = {"events": [cart_event("k1", "v-ok-1"), cart_event("k2", "v-corrupt"),
                            cart_event("k3", "v-ok-2", 2), cart_event("k4", "v-corrupt")]}
        r = httpx.post(f"{server.url}/v1/events", json=batch, timeout=10)
        assert r.status_code == 200, r.text
        wait_drained(sink)
        # Later events go through: nothing waits behind the corrupt profile.
        r = httpx.post(f"{server.url}/v1/events", json=cart_event("k5", "v-ok-1"), timeout=10)
        assert r.status_code == 200 and r.json()["profiles_updated"] is True
        assert sink.writer.skipped == 2
    assert stored(redis_url, "v-ok-1").cart == {ITEM: 2}
    assert stored(redis_url, "v-ok-2").cart == {ITEM: 2}
    assert "skipped 2 events of visitor 'v-corrupt'" in caplog.text and "vitrine replay" in caplog.text


def test_a_key_of_the_wrong_type_is_skipped_not_retried_for_ever(data_dir: Path, redis_url: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """WRONGTYPE is about the stored data, not the server: waiting does not fix it, so the
    visitor's events are skipped like a corrupt profile's and nobody queues behind them."""
    with redis.Redis.from_url(redis_url) as client:
        client.rpush("v:{v-list}", "not a profile")
    app = create_app(make_settings(data_dir, redis_url))
    with LiveServer(app) as server, caplog.at_level(logging.ERROR, logger="engine.ingest.writer"):
        sink = app.state.sink
        batch = {"events": [cart_event("w1", "v-list"), cart_event("w2", "v-fine")]}
        r = httpx.post(f"{server.url}/v1/events", json=batch, timeout=10)
        assert r.status_code == 200, r.text
        wait_drained(sink)
        assert sink.writer.skipped == 1 and sink.backlog == 0
    assert stored(redis_url, "v-fine").cart == {ITEM: 1}
    assert "skipped 1 events of visitor 'v-list'" in caplog.text and "WRONGTYPE" in caplog.text


def test_contention_ends_in_the_backlog_not_in_a_500(data_dir: Path, redis_url: str) -> None:
    """Other writers keep winning the compare-and-set (simulated once): the request is a 200 and
    the events are applied on the retry."""
    app = create_app(make_settings(data_dir, redis_url))
    with LiveServer(app) as server:
        applier = app.state.engine.applier
        real_apply, failures = applier.apply, [ApplyContention("others kept writing")]

        async def contended(events: list[Event]):  # type: ignore[no-untyped-def]
            if failures:
                raise failures.pop()
            return await real_apply(events)

        applier.apply = contended
        r = httpx.post(f"{server.url}/v1/events", json=cart_event("x1", "v-contended"), timeout=10)
        assert r.status_code == 200 and r.json()["profiles_updated"] is False
        wait_drained(app.state.sink)
    assert stored(redis_url, "v-contended").cart == {ITEM: 1}


def events(count: int, visitor: str) -> list[Event]:
    return [Event.model_validate({"event_id": f"d{i}", "type": "product_view", "visitor_id": visitor,
                                  "item_id": ITEM, "ts": time.time(), "rt": time.time()}) for i in range(count)]


def make_sink(tmp_path: Path, url: str) -> EmbeddedSink:
    client = connect(url, timeout_s=0.5)
    applier = EventApplier(client, lambda item: None, ProfileConfig(), visitor_ttl_s=3600, customer_ttl_s=3600,
                           dedup_window_s=3600, trending_clock=TrendingClock(3600))
    return EmbeddedSink(EventLog(tmp_path / "log", fsync=False), applier, timeout_s=0.2, drain_timeout_s=1.0)


def test_shutdown_drains_what_it_can_and_says_what_it_could_not(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis(tmp_path / "redis", persist=False)
    try:
        async def run() -> None:
            up = make_sink(tmp_path / "up", server.url)
            assert await up.submit(events(3, "v-up")) is True
            await up.close()
            down = make_sink(tmp_path / "down", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
            assert await down.submit(events(5, "v-down")) is False
            with caplog.at_level(logging.ERROR, logger="engine.ingest.writer"):
                await down.close()

        asyncio.run(run())
        assert stored(server.url, "v-up").session_items == [ITEM]
    finally:
        server.stop()
    assert "shutting down with 5 accepted events not applied" in caplog.text
    assert "vitrine replay" in caplog.text
