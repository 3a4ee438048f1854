"""Apply the event log's tail past the checkpoint: events accepted but never applied.

An accepted event is in the log before it is acknowledged, but it may not have reached the
profiles: Redis was down or slow and the process died with the events queued, or the queue was
full. Every start of the embedded API (``at_start``) and ``vitrine replay`` read each segment from
its checkpoint offset (``engine.ingest.checkpoint``), merge the segments by acceptance time, as live
processing saw them, and apply the lines through the same ``EventApplier`` as live events. A line
applied twice is a no-op (dedup memory), so starting below the true position is always safe.

Where to start a segment the checkpoint does not name:

- the checkpoint is complete (a catch-up has run since the log began): the segment is newer, so
  from its start;
- Redis holds no profiles at all (it lost everything, or `replay --reset`): from its start, so the
  whole log comes back;
- otherwise (profiles but no complete checkpoint: the first start after upgrading, or a lost
  key): from its first event accepted within the dedup window. Older events are taken as applied,
  since the dedup memory no longer knows them and applying them again would count them twice.

With several API workers, one start catches up at a time (a file lock in the log directory), so
the others find nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from redis.asyncio import Redis

from engine import tasks
from engine.ingest.apply import EventApplier
from engine.ingest.checkpoint import Checkpoint, Positions
from engine.events.log import read_lines, segments, to_event
from engine.events.schema import Event
from engine.ingest.isolate import Tally, apply_isolating
from engine.ingest.replay import has_profiles

log = logging.getLogger(__name__)
BATCH = 1000
LOCK = ".catch-up.lock"
MAX_RETRY_S = 60.0
TASK_NAME = "log-catch-up"


class SegmentInfo(NamedTuple):
    name: str
    size: int
    mtime: float


@dataclass
class CatchUpStats(Tally):
    assumed_applied: int = 0  # segments whose older part was taken as applied (no checkpoint)


def plan(infos: list[SegmentInfo], positions: Positions, profiles_exist: bool,
         cutoff: float) -> dict[str, int | None]:
    """Each segment's start offset; None: from its first event accepted after ``cutoff`` (to be
    found by reading it). See the module docstring for the rules."""
    starts: dict[str, int | None] = {}
    for info in infos:
        if info.name in positions.offsets:
            starts[info.name] = positions.offsets[info.name]
        elif positions.complete or not profiles_exist:
            starts[info.name] = 0
        elif info.mtime <= cutoff:  # its last line was accepted before the cutoff
            starts[info.name] = info.size
        else:
            starts[info.name] = None
    return starts


def first_after(path: Path, cutoff: float) -> int:
    """The offset of the first line accepted after ``cutoff`` (a segment is in acceptance order),
    else the end of its last complete line."""
    offset = 0
    for end, data in read_lines(path):
        if data.get("rt", 0.0) > cutoff:
            return offset
        offset = end
    return offset


class _Line(NamedTuple):
    rt: float
    segment: str
    end: int
    data: dict[str, Any]


def _lines(directory: Path, segment: str, start: int) -> Iterator[_Line]:
    for end, data in read_lines(directory / segment, start):
        yield _Line(data.get("rt", 0.0), segment, end, data)


def _take(lines: Iterator[_Line], count: int) -> tuple[list[Event], dict[str, int]]:
    """The next ``count`` events and, per segment, the offset after the last of them."""
    events, ends = [], {}
    for line in itertools.islice(lines, count):
        ends[line.segment] = line.end
        if (event := to_event(line.data, line.segment)) is not None:
            events.append(event)
    return events, ends


async def catch_up(applier: EventApplier, redis: Redis, directory: Path, *, dedup_window_s: int,
                   only: Collection[str] | None = None, batch: int = BATCH) -> CatchUpStats:
    """Apply every segment's lines past its checkpoint offset (``only``: these segments), moving
    the checkpoint as batches are applied."""
    started = time.perf_counter()
    stats = CatchUpStats()
    checkpoint = Checkpoint(redis)
    infos = []
    for path in segments(directory):
        if only is None or path.name in only:
            with contextlib.suppress(FileNotFoundError):  # deleted by retention meanwhile
                st = path.stat()
                infos.append(SegmentInfo(path.name, st.st_size, st.st_mtime))
    positions = await checkpoint.load()
    unnamed = [i for i in infos if i.name not in positions.offsets]
    profiles_exist = bool(unnamed) and not positions.complete and await has_profiles(redis)
    cutoff = time.time() - dedup_window_s
    starts: dict[str, int] = {}
    for name, start in plan(infos, positions, profiles_exist, cutoff).items():
        if start is None:
            start = await asyncio.to_thread(first_after, directory / name, cutoff)
        if start and name not in positions.offsets:
            stats.assumed_applied += 1
        starts[name] = start
    if stats.assumed_applied:
        log.warning("no complete checkpoint of the event log and Redis holds profiles: events accepted more "
                    "than %ss ago are taken as applied (%d segments); `vitrine replay --reset` rebuilds "
                    "everything", dedup_window_s, stats.assumed_applied)
    # Every segment gets its field first, so a catch-up cut short resumes where it stopped.
    await checkpoint.save(starts, complete=True)
    sizes = {i.name: i.size for i in infos}
    streams = [_lines(directory, name, start) for name, start in starts.items() if start < sizes[name]]
    merged = heapq.merge(*streams, key=lambda line: line.rt)
    while True:
        events, ends = await asyncio.to_thread(_take, merged, batch)
        if not ends:
            break
        stats.count(len(events), await apply_isolating(applier.apply, events))
        await checkpoint.save(ends)
    stats.seconds = time.perf_counter() - started
    if stats.events:  # a warning when something had been lost: a crash, or a start after Redis lost data
        log.log(logging.WARNING if stats.applied else logging.INFO,
                "caught up the event log: %d events read past the checkpoint, %d applied, %d already applied, "
                "%d skipped, in %.1fs", stats.events, stats.applied, stats.duplicates, stats.skipped, stats.seconds)
    return stats


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def at_start(applier: EventApplier, redis: Redis, directory: Path, *,
                   dedup_window_s: int) -> asyncio.Task[None] | None:
    """Catch up before serving, one process at a time. If it fails (Redis unavailable), serving
    starts anyway and a background task retries with backoff until it succeeds: returned, for the
    caller to stop at shutdown. It covers the segments on disk now, not those this process is
    about to write (its own writer applies those)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = {path.name for path in segments(directory)}

    async def attempt() -> None:
        async with _locked(directory / LOCK):
            await catch_up(applier, redis, directory, dedup_window_s=dedup_window_s, only=names)

    try:
        await attempt()
        return None
    except Exception as exc:  # noqa: BLE001 - serve anyway; the tail is applied when Redis answers
        log.warning("could not catch up the event log before serving (%s: %s); retrying in the background",
                    type(exc).__name__, exc)

    async def retry() -> None:
        await tasks.retry(attempt, tasks.FailureStreak(TASK_NAME, first_backoff_s=1.0, max_backoff_s=MAX_RETRY_S))
        log.info("caught up the event log after a retry")

    return asyncio.create_task(retry(), name=f"vitrine-{TASK_NAME}")
