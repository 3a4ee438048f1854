"""Event-log retention (engine.ingest.retention) and the training window (engine.events.history): segments go
only when fully applied and older than the training window; consent records outlive them; what
`vitrine train` reads is the same before and after. Real files and a real Redis."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import redis

from engine import tasks

from engine.ingest import retention
from engine.ingest.checkpoint import Checkpoint
from engine.store.keys import log_applied
from engine.events.log import EventLog, read_lines, segments
from engine.events.schema import Event
from engine.events.history import interactions, interactions_from_log
from engine.ingest.retention import SegmentInfo, choose
from tests.conftest import make_settings

DAY = 86400
NOW = 1_000 * DAY


def info(name: str, age_days: float, applied: bool = True, size: int = 100) -> SegmentInfo:
    return SegmentInfo(name, size, NOW - age_days * DAY, applied)


def test_only_applied_segments_outside_the_training_window_go() -> None:
    infos = [info("a", 400), info("b", 400, applied=False), info("c", 380), info("d", 200), info("e", 1)]
    year = 365 * DAY
    assert choose(infos, now=NOW, train_window_s=year, retention_s=year, retention_bytes=0) == ["a", "c"]
    # A size budget goes oldest first, but never into the training window nor past what is unapplied.
    assert choose(infos, now=NOW, train_window_s=year, retention_s=0, retention_bytes=150) == ["a", "c"]
    assert choose(infos, now=NOW, train_window_s=year, retention_s=0, retention_bytes=450) == ["a"]
    assert choose(infos, now=NOW, train_window_s=30 * DAY, retention_s=0, retention_bytes=150) == ["a", "c", "d"]
    assert choose(infos, now=NOW, train_window_s=year, retention_s=0, retention_bytes=0) == []


def event(event_id: str, kind: str, visitor: str, age_days: float, **fields: object) -> Event:
    rt = time.time() - age_days * DAY
    return Event.model_validate({"event_id": event_id, "type": kind, "visitor_id": visitor, "ts": rt, "rt": rt,
                                 **fields})


def segment(directory: Path, events: list[Event], age_days: float) -> str:
    event_log = EventLog(directory, fsync=False)
    event_log.write(events)
    event_log.close()
    path = segments(directory)[-1]
    when = time.time() - age_days * DAY
    os.utime(path, (when, when))
    return path.name


def test_retention_keeps_what_training_reads_and_every_consent_record(tmp_path: Path, redis_url: str) -> None:
    log_dir = tmp_path / "log"
    views = segment(log_dir, [event("v1", "product_view", "k", 400, item_id="A")], 400)
    consent = segment(log_dir, [event("v2", "product_view", "w", 399, item_id="A"),
                                event("w-off", "consent", "w", 399, properties={"granted": False}),
                                event("g1", "page_view", "g", 399, gpc=True)], 399)
    unapplied = segment(log_dir, [event("v3", "product_view", "u", 398, item_id="A")], 398)
    torn = segment(log_dir, [event("v4", "product_view", "t", 397, item_id="A")], 397)
    recent = segment(log_dir, [event("v5", "product_view", "k", 10, item_id="B"),
                               event("v6", "product_view", "w", 10, item_id="B")], 10)
    sizes = {p.name: p.stat().st_size for p in segments(log_dir)}
    with (log_dir / torn).open("ab") as fh:
        fh.write(b'{"event_id":"cut')
    os.utime(log_dir / torn, (time.time() - 397 * DAY,) * 2)
    consent_mtime = (log_dir / consent).stat().st_mtime
    offsets = {**sizes, unapplied: 0, "events-00000000000000000001-1.jsonl": 5}  # the last: a deleted file's
    settings = make_settings(tmp_path, redis_url, log_retention_bytes=1)
    since = time.time() - settings.train_window_s
    rows_before = list(interactions_from_log(log_dir, since=since))

    async def run() -> retention.RetentionStats | None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await Checkpoint(client).save(offsets, complete=True)
        stats = await retention.enforce(client, settings)
        await client.aclose()
        return stats

    stats = asyncio.run(run())
    assert stats is not None and sorted(stats.compacted) == [consent]
    assert {p.name for p in segments(log_dir)} == {consent, unapplied, recent}
    assert [d["event_id"] for _, d in read_lines(log_dir / consent)] == ["w-off", "g1"]
    assert (log_dir / consent).stat().st_mtime == consent_mtime
    with redis.Redis.from_url(redis_url) as client:
        assert {k.decode() for k in client.hkeys(log_applied())} == {"created", consent, unapplied, recent}
    # Training reads the same rows: k's recent view; w's is left out, w having withdrawn before.
    rows_after = list(interactions_from_log(log_dir, since=since))
    assert rows_after == rows_before and [(r.visitor_id, r.item_id) for r in rows_after] == [("k", "B")]


def test_training_reads_its_window_but_consent_from_the_whole_history() -> None:
    now = time.time()
    def at(age: float, **fields: object) -> dict:
        return {**fields, "ts": now - age, "rt": now - age}

    events = [at(50, event_id="old", type="purchase", visitor_id="a", item_id="X"),
              at(40, event_id="off", type="consent", visitor_id="b", properties={"granted": False}),
              at(5, event_id="b1", type="product_view", visitor_id="b", item_id="Y"),
              at(5, event_id="a1", type="product_view", visitor_id="a", item_id="Y")]
    assert [r.visitor_id for r in interactions(events)] == ["a", "a"]
    assert [(r.visitor_id, r.item_id) for r in interactions(events, since=now - 10)] == [("a", "Y")]


def test_the_retention_loop_outlives_its_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pure unit test of the loop: a pass that raises is logged and retried, the loop goes on."""
    calls = []

    async def flaky(redis: object, settings: object) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise OSError("disk on fire")

    monkeypatch.setattr(retention, "enforce", flaky)

    async def run() -> bool:
        settings = make_settings(tmp_path, "redis://unused")
        task = retention.start(None, settings, every_s=0.01, first_after_s=0)  # type: ignore[arg-type]
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        alive = not task.done()
        task.cancel()
        return alive

    failures = tasks.failures("log-retention")
    assert asyncio.run(run())
    assert tasks.failures("log-retention") - failures == 2
