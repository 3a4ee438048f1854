"""Crash recovery in the embedded mode: the checkpoint of how far the event log is applied, the
writer that moves it, and the catch-up that applies the rest (engine.ingest.checkpoint, engine.ingest.writer,
engine.ingest.catchup). Real Redis and real log files; the writer's bookkeeping is also checked against a
stub applier (pure logic: which offsets may be saved when)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.store import keys
from engine.ingest.apply import ApplyStats, EventApplier
from engine.ingest.catchup import SegmentInfo, catch_up, plan
from engine.ingest.checkpoint import CREATED, Checkpoint, Positions
from engine.store.keys import log_applied
from engine.events.log import EventLog, encode, read_lines, segments
from engine.events.schema import Event
from engine.ingest.writer import EmbeddedSink
from engine.profiles.shapes import ProfileConfig, VisitorProfile
from engine.store.connect import connect
from engine.ranking.trending import TrendingClock
from tests.api.cli.test_serve_and_demo import ROOT, VITRINE

DAY = 86400


def cart(event_id: str, visitor: str, rt: float | None = None) -> Event:
    rt = time.time() if rt is None else rt
    return Event(event_id=event_id, type="add_to_cart", visitor_id=visitor, item_id="A", ts=rt, rt=rt)


def make_applier(url: str) -> EventApplier:
    return EventApplier(connect(url, timeout_s=2), lambda item: None, ProfileConfig(), visitor_ttl_s=DAY,
                        customer_ttl_s=DAY, dedup_window_s=DAY, trending_clock=TrendingClock(3600))


def carts(url: str, visitors: list[str]) -> dict[str, int]:
    with redis.Redis.from_url(url) as client:
        return {v: VisitorProfile.decode(client.get(keys.visitor(v))).cart.get("A", 0) for v in visitors}


# ------------------------------------------------------------------------------ where to start


def test_plan_starts_each_segment_where_nothing_before_is_missing() -> None:
    infos = [SegmentInfo("a", 100, 10.0), SegmentInfo("b", 200, 500.0), SegmentInfo("c", 50, 990.0)]
    # A complete checkpoint: named segments from their offset, a newer one from its start.
    assert plan(infos, Positions({"a": 100, "b": 80}, complete=True), True, 900.0) == {"a": 100, "b": 80, "c": 0}
    # No checkpoint, no profiles (Redis lost everything): the whole log.
    assert plan(infos, Positions({}, complete=False), False, 900.0) == {"a": 0, "b": 0, "c": 0}
    # No checkpoint but profiles (first start after upgrading): segments last written before the
    # dedup horizon are taken as applied; a later one is read from its first event after it.
    assert plan(infos, Positions({}, complete=False), True, 900.0) == {"a": 100, "b": 200, "c": None}
    # A field written by a running process before any catch-up completed still counts.
    assert plan(infos, Positions({"c": 20}, complete=False), True, 900.0) == {"a": 100, "b": 200, "c": 20}


# ------------------------------------------------------------------------------ the writer


class StubApplier:
    """Fails like Redis (transiently) for the first calls, fails like corrupt data for one
    visitor, and records what it applied."""

    def __init__(self, transient_failures: int, bad_visitor: str) -> None:
        self.transient_failures = transient_failures
        self.bad_visitor = bad_visitor
        self.applied: list[str] = []
        self.blocked = asyncio.Event()
        self.blocked.set()

    async def apply(self, events: list[Event]) -> ApplyStats:
        await self.blocked.wait()
        if self.transient_failures:
            self.transient_failures -= 1
            raise RedisConnectionError("Redis is away")
        if any(e.visitor_id == self.bad_visitor for e in events):
            raise ValueError("not a profile")
        self.applied.extend(e.event_id for e in events)
        return ApplyStats(applied=len(events))


class CheckedCheckpoint:
    """Saves offsets, asserting that every line below a saved offset was applied or skipped."""

    def __init__(self, directory: Path, applier: StubApplier) -> None:
        self.directory = directory
        self.applier = applier
        self.offsets: dict[str, int] = {}

    async def save(self, offsets: dict[str, int], *, complete: bool = False) -> None:
        done = set(self.applier.applied)
        for segment, offset in offsets.items():
            below = [d for _, d in read_lines(self.directory / segment, 0, offset)]
            assert all(d["event_id"] in done or d["visitor_id"] == self.applier.bad_visitor for d in below)
            assert offset >= self.offsets.get(segment, 0)
            self.offsets[segment] = offset


def test_the_writer_moves_the_checkpoint_only_past_applied_events(tmp_path: Path) -> None:
    """300 concurrent requests (group-committed fsyncs finish in any order), Redis failing at
    first, a visitor whose events cannot be applied, and a backlog of 40 events in memory: every
    offset saved has only applied (or skipped) events below it; the events past the backlog are
    read back from the log in order; at the end every segment is checkpointed to its end."""
    log_dir = tmp_path / "log"
    applier = StubApplier(transient_failures=3, bad_visitor="v-bad")
    checkpoint = CheckedCheckpoint(log_dir, applier)
    event_log = EventLog(log_dir, segment_bytes=4000, fsync=True)
    sink = EmbeddedSink(event_log, applier, checkpoint, timeout_s=0.01, max_backlog=40)  # type: ignore[arg-type]
    rng = random.Random(7)
    visitors = [f"v{i}" for i in range(12)] + ["v-bad"]
    requests = [[cart(f"e{r}-{i}", rng.choice(visitors)) for i in range(rng.randint(1, 3))] for r in range(300)]

    async def run() -> None:
        applier.blocked.clear()  # everything queues up first: the backlog overflows
        await asyncio.gather(*(sink.submit(events) for events in requests))
        assert sink.writer.spilled > 0
        applier.blocked.set()
        while sink.backlog:
            await asyncio.sleep(0.01)
        await sink.close()

    asyncio.run(run())
    logged = [d for path in segments(log_dir) for _, d in read_lines(path)]
    assert len(segments(log_dir)) > 3
    assert sink.writer.skipped == sum(d["visitor_id"] == "v-bad" for d in logged)
    assert checkpoint.offsets == {p.name: p.stat().st_size for p in segments(log_dir)}
    # Each visitor's events applied once each, in the order they were logged.
    for visitor in visitors[:-1]:
        in_log = [d["event_id"] for d in logged if d["visitor_id"] == visitor]
        assert list(dict.fromkeys(e for e in applier.applied if e in set(in_log))) == in_log


def test_a_failed_fsync_refuses_the_events_and_moves_to_a_new_segment(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure unit test (a real failing fsync cannot be staged here): an EIO from fsync fails every
    request it covered, with nothing acknowledged, and the next write starts a new segment."""
    from engine.events import log as eventlog
    from engine.ingest.writer import SinkUnavailable

    applier = StubApplier(transient_failures=0, bad_visitor="-")
    sink = EmbeddedSink(EventLog(tmp_path, fsync=True), applier, timeout_s=1.0)  # type: ignore[arg-type]
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    async def run() -> None:
        assert await sink.submit([cart("ok-1", "v")]) is True
        monkeypatch.setattr(eventlog.os, "fsync", failing)
        results = await asyncio.gather(*(sink.submit([cart(f"io-{i}", "v")]) for i in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, SinkUnavailable) and "Input/output error" in str(r) for r in results), results
        monkeypatch.setattr(eventlog.os, "fsync", real_fsync)
        assert await sink.submit([cart("ok-2", "v")]) is True
        await sink.close()

    asyncio.run(run())
    assert len(segments(tmp_path)) == 2
    assert [d["event_id"] for _, d in read_lines(segments(tmp_path)[1])] == ["ok-2"]


# ------------------------------------------------------------------------------ catch-up


def write_log(directory: Path, events: list[Event]) -> list[int]:
    """One segment (as one crashed process left it); the offset after each event."""
    event_log = EventLog(directory, fsync=False)
    ends = [event_log.write([e]).end for e in events]  # type: ignore[union-attr]
    event_log.close()
    return ends


def test_catch_up_applies_only_what_the_checkpoint_has_not_seen(tmp_path: Path, redis_url: str) -> None:
    events = [cart(f"c{i}", f"v{i % 4}") for i in range(20)]
    ends = write_log(tmp_path, events)
    [segment] = [p.name for p in segments(tmp_path)]
    with segments(tmp_path)[0].open("ab") as fh:
        fh.write(b'{"event_id":"torn","type":"add_to')  # the crash cut the last write short

    async def run() -> list[int]:
        applier = make_applier(redis_url)
        await applier.apply(events[:12])
        await Checkpoint(applier._redis).save({segment: ends[7]}, complete=True)  # noqa: SLF001 - lagging
        first = await catch_up(applier, applier._redis, tmp_path, dedup_window_s=DAY)  # noqa: SLF001
        again = await catch_up(applier, applier._redis, tmp_path, dedup_window_s=DAY)  # noqa: SLF001
        return [first.events, first.applied, first.duplicates, again.events]

    assert asyncio.run(run()) == [12, 8, 4, 0]
    assert carts(redis_url, ["v0", "v1", "v2", "v3"]) == {"v0": 5, "v1": 5, "v2": 5, "v3": 5}
    with redis.Redis.from_url(redis_url) as client:
        assert int(client.hget(log_applied(), segment)) == ends[-1]  # the torn line is not counted in
        assert client.hexists(log_applied(), CREATED) and client.ttl(log_applied()) == -1


def test_first_start_after_upgrading_applies_only_the_dedup_window(tmp_path: Path, redis_url: str) -> None:
    """A log from before checkpoints, profiles in Redis: events older than the dedup memory are
    taken as applied (applying them again would count them twice); recent ones are caught up."""
    now = time.time()
    old = [cart(f"old{i}", "v-old", now - 3 * DAY + i) for i in range(3)]
    recent = [cart(f"new{i}", "v-new", now - 3600 + i) for i in range(6)]
    write_log(tmp_path, old)
    os.utime(segments(tmp_path)[0], (now - 3 * DAY, now - 3 * DAY))
    write_log(tmp_path, [cart("mixed-old", "v-mixed", now - 2 * DAY), cart("mixed-new", "v-mixed", now - 60)])
    write_log(tmp_path, recent)

    async def run() -> tuple[int, int]:
        applier = make_applier(redis_url)
        await applier.apply(recent[:2])  # what the crashed process had applied
        stats = await catch_up(applier, applier._redis, tmp_path, dedup_window_s=DAY)  # noqa: SLF001
        return stats.applied, stats.assumed_applied

    assert asyncio.run(run()) == (5, 2)
    assert carts(redis_url, ["v-old", "v-new", "v-mixed"]) == {"v-old": 0, "v-new": 6, "v-mixed": 1}


def test_a_redis_that_lost_everything_gets_the_whole_log_back(tmp_path: Path, redis_url: str) -> None:
    now = time.time()
    write_log(tmp_path, [cart(f"o{i}", "v-1", now - 30 * DAY + i) for i in range(4)])
    write_log(tmp_path, [cart(f"n{i}", "v-2", now - 10 + i) for i in range(3)])
    with segments(tmp_path)[-1].open("ab") as fh:  # a line this version cannot read, then a good one
        fh.write(b'{"event_id":"x","type":"teleport","visitor_id":"v-2","rt":%f}\n' % now + encode(cart("n3", "v-2")))

    async def run() -> int:
        applier = make_applier(redis_url)
        return (await catch_up(applier, applier._redis, tmp_path, dedup_window_s=DAY)).applied  # noqa: SLF001

    assert asyncio.run(run()) == 8
    assert carts(redis_url, ["v-1", "v-2"]) == {"v-1": 4, "v-2": 4}


def vitrine(args: list[str], data_dir: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update(VITRINE_DATA_DIR=str(data_dir), VITRINE_REDIS_URL=redis_url)
    return subprocess.run(VITRINE + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_replay_without_reset_catches_up_and_reset_rebuilds(tmp_path: Path, redis_url: str) -> None:
    events = [cart(f"r{i}", f"v{i % 3}") for i in range(9)]
    ends = write_log(tmp_path / "log", events)
    [segment] = [p.name for p in segments(tmp_path / "log")]

    async def crashed() -> None:  # what a process killed with its backlog queued leaves behind
        applier = make_applier(redis_url)
        await applier.apply(events[:4])
        await Checkpoint(applier._redis).save({segment: ends[3]}, complete=True)  # noqa: SLF001

    asyncio.run(crashed())
    done = vitrine(["replay"], tmp_path, redis_url)
    assert done.returncode == 0, done.stderr
    assert "replayed 5 events from log" in done.stdout and "past the checkpoint" in done.stdout
    assert "5 applied, 0 duplicates skipped" in done.stdout
    assert carts(redis_url, ["v0", "v1", "v2"]) == {"v0": 3, "v1": 3, "v2": 3}
    again = vitrine(["replay"], tmp_path, redis_url)
    assert again.returncode == 0 and "replayed 0 events" in again.stdout
    reset = vitrine(["replay", "--reset"], tmp_path, redis_url)
    assert reset.returncode == 0 and "replayed 9 events" in reset.stdout and "9 applied" in reset.stdout
    assert carts(redis_url, ["v0", "v1", "v2"]) == {"v0": 3, "v1": 3, "v2": 3}


def test_imported_events_are_checkpointed_so_no_start_applies_them_again(tmp_path: Path, redis_url: str) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
                   + "".join(f"2024-01-01T10:0{i}:00Z,v{i},,add_to_cart,A,1,\n" for i in range(5)))
    done = vitrine(["import", "--events", str(csv)], tmp_path, redis_url)
    assert done.returncode == 0, done.stderr
    [segment] = segments(tmp_path / "log")
    with redis.Redis.from_url(redis_url) as client:
        assert int(client.hget(log_applied(), segment.name)) == segment.stat().st_size
    again = vitrine(["replay"], tmp_path, redis_url)
    assert again.returncode == 0 and "replayed 0 events" in again.stdout
