"""The durable log and the model artifacts on disk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from engine.events.log import EventLog, dump, read_events, read_raw, segments
from engine.events.schema import Event
from models import artifacts
from models.artifacts import Artifact


def ev(i: int, rt: float) -> Event:
    return Event(event_id=f"e{i}", type="page_view", visitor_id="v", ts=rt, rt=rt)


def test_log_round_trip_merges_processes_by_time_and_survives_a_torn_line(tmp_path: Path) -> None:
    first = EventLog(tmp_path, segment_bytes=200)
    second = EventLog(tmp_path)

    async def write() -> None:
        await first.append([ev(1, 10.0), ev(3, 30.0)])
        await second.append([ev(2, 20.0)])
        await asyncio.gather(*(first.append([ev(i, 40.0 + i)]) for i in range(4, 8)))

    asyncio.run(write())
    first.close()
    second.close()
    assert len(segments(tmp_path)) >= 3  # rotation by size, one writer per file
    with segments(tmp_path)[-1].open("ab") as fh:
        fh.write(b'{"event_id": "torn", "type": "pa')
    assert [e.event_id for e in read_events(tmp_path)] == [f"e{i}" for i in range(1, 8)]


def test_rotation_while_fsyncs_are_in_flight_loses_nothing(tmp_path: Path) -> None:
    """Segments rotate under concurrent appends: an old segment is fsync'd by the next group commit
    (in its thread, not on the loop), closed once one has covered it, and every line is readable."""
    log = EventLog(tmp_path, segment_bytes=300, fsync=True)

    async def burst() -> None:
        await asyncio.gather(*(log.append([ev(i, 1000.0 + i)]) for i in range(300)))

    asyncio.run(burst())
    assert not log._retired  # noqa: SLF001 - every rotated-out segment was covered by a commit and closed
    log.close()
    assert len(segments(tmp_path)) > 50
    assert [e.event_id for e in read_events(tmp_path)] == [f"e{i}" for i in range(300)]


def test_fsync_is_group_committed(tmp_path: Path) -> None:
    log = EventLog(tmp_path, fsync=True)

    async def burst() -> None:
        await asyncio.gather(*(log.append([ev(i, time.time())]) for i in range(50)))

    asyncio.run(burst())
    assert log._synced == log._written == 50  # noqa: SLF001 - the group commit bookkeeping is the point
    log.close()


def test_a_line_leaves_out_the_event_time_when_it_is_the_acceptance_time(tmp_path: Path) -> None:
    """Events sent without a timestamp get the server's time as ``ts``: the line does not repeat
    it, readers put it back; the Kafka message value keeps every field."""
    log = EventLog(tmp_path, fsync=False)
    same = Event(event_id="now", type="page_view", visitor_id="v", ts=1800000000.25, rt=1800000000.25)
    sent = Event(event_id="sent", type="page_view", visitor_id="v", ts=1799999000.0, rt=1800000001.5)
    log.write([same, sent])
    log.close()
    first, second = segments(tmp_path)[0].read_bytes().splitlines()
    assert b'"ts"' not in first and b'"ts":1799999000.0' in second
    assert list(read_events(tmp_path)) == [same, sent]
    assert [d["ts"] for d in read_raw(tmp_path)] == [1800000000.25, 1799999000.0]
    assert b'"ts":1800000000.25' in dump(same)


def tiny_artifact() -> Artifact:
    return Artifact(
        item_ids=["a", "b"], user_ids=["v:1"], item_factors=np.ones((2, 4), np.float32),
        user_items=csr_matrix(np.ones((1, 2), np.float32)),
        similar_index=np.array([[1], [0]], np.int32), similar_score=np.ones((2, 1), np.float32),
        complement_index=np.array([[1], [0]], np.int32), complement_score=np.ones((2, 1), np.float32),
        popularity=np.array([2.0, 1.0], np.float32), meta={"data": {"events": 2}},
    )


def test_versions_promotion_and_pruning(tmp_path: Path) -> None:
    assert artifacts.current_version(tmp_path) is None
    names = []
    for n in range(3):
        art = tiny_artifact()
        art.meta["version"] = f"2026010{n}T000000Z-00000{n}"
        names.append(artifacts.save(art, tmp_path).name)
    (tmp_path / ".tmp-half-written").mkdir()
    assert artifacts.versions(tmp_path) == names
    assert artifacts.current_version(tmp_path) == names[-1]  # nothing promoted: newest
    artifacts.promote(tmp_path, names[0])
    assert artifacts.current_version(tmp_path) == names[0]
    loaded = artifacts.load(tmp_path / names[0])
    assert loaded.version == names[0] and loaded.item_ids == ["a", "b"] and loaded.user_items.nnz == 2
    assert artifacts.prune(tmp_path, keep=1) == [names[1]]
    assert artifacts.versions(tmp_path) == [names[0], names[2]]
    try:
        artifacts.promote(tmp_path, "missing")
    except FileNotFoundError as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("promoting a missing version must fail")


def test_artifacts_written_with_user_factors_still_load(tmp_path: Path) -> None:
    """Earlier versions also saved the ALS user factors (nothing read them): those still load."""
    path = artifacts.save(tiny_artifact(), tmp_path)
    assert "user_factors" not in np.load(path / "arrays.npz").files
    old = dict(np.load(path / "arrays.npz"))
    np.savez(path / "arrays.npz", user_factors=np.ones((1, 4), np.float32), **old)
    loaded = artifacts.load(path)
    assert loaded.item_ids == ["a", "b"] and loaded.item_factors.shape == (2, 4)
