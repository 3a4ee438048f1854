"""Event-log retention: segments past the age limit, or over the size budget, are deleted.

Only a segment that is entirely applied (its checkpoint offset reaches its last complete line:
``engine.ingest.checkpoint``) and entirely older than the training window (last written before it) can
go: the profiles have everything it holds and ``vitrine train`` would not read it. Among those,
a segment goes when it is older than ``log_retention_s``, or, oldest first, while the log is larger
than ``log_retention_bytes``; so the size budget never cuts into the training window.

Consent records outlive their segment: the lines of consent events and of events sent with Global
Privacy Control are kept (the segment is rewritten with only them), because training and
``vitrine replay`` must still know who withdrew, however long ago.

With several API workers, one at a time works (a file lock); the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson
from redis.asyncio import Redis

from engine import tasks
from engine.ingest import erasure
from engine.ingest.checkpoint import Checkpoint
from engine.events.log import rewrite_segment, segments
from engine.settings import Settings

log = logging.getLogger(__name__)
EVERY_S = 3600.0
FIRST_AFTER_S = 60.0
LOCK = ".retention.lock"


class SegmentInfo(NamedTuple):
    name: str
    size: int
    mtime: float
    applied: bool


@dataclass
class RetentionStats:
    deleted: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def choose(infos: list[SegmentInfo], *, now: float, train_window_s: float, retention_s: float,
           retention_bytes: int) -> list[str]:
    """The segments to let go, oldest first (``infos`` oldest first); a limit of 0 is no limit."""
    total = sum(info.size for info in infos)
    chosen = []
    for info in infos:
        if not info.applied or info.mtime >= now - train_window_s:
            continue
        too_old = bool(retention_s) and info.mtime < now - retention_s
        too_big = bool(retention_bytes) and total > retention_bytes
        if too_old or too_big:
            chosen.append(info.name)
            total -= info.size
    return chosen


def kept(line: bytes) -> bool:
    """Whether a line outlives its segment: a consent record."""
    if b'"consent"' not in line and b'"gpc"' not in line:  # most lines: no need to parse them
        return False
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return data.get("type") == "consent" or data.get("gpc") is True


def applied_through(path: Path, offset: int) -> bool:
    """Whether nothing but a torn last line (no newline) lies past ``offset``."""
    with path.open("rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 16):
            if b"\n" in chunk:
                return False
    return True


def compact(path: Path) -> int:
    """Rewrite the segment with only its kept lines (same modification time), or delete it if
    none; returns the bytes freed."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        lines = [line for line in fh if line.endswith(b"\n") and kept(line)]
    data = b"".join(lines)
    if not data:
        path.unlink()
        return size
    if len(data) == size:
        return 0
    rewrite_segment(path, data)
    return size - len(data)


def _inspect(directory: Path, offsets: dict[str, int]) -> list[SegmentInfo]:
    infos = []
    for path in segments(directory):
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            offset = offsets.get(path.name)
            applied = offset is not None and (offset >= st.st_size or applied_through(path, offset))
            infos.append(SegmentInfo(path.name, st.st_size, st.st_mtime, applied))
    return infos


def _apply(directory: Path, offsets: dict[str, int], settings: Settings, now: float) -> RetentionStats:
    stats = RetentionStats()
    infos = _inspect(directory, offsets)
    on_disk = {info.name for info in infos}
    stats.deleted = [name for name in offsets if name not in on_disk]  # stale fields
    for name in choose(infos, now=now, train_window_s=settings.train_window_s,
                       retention_s=settings.log_retention_s, retention_bytes=settings.log_retention_bytes):
        path = directory / name
        freed = compact(path)
        stats.bytes_freed += freed
        if not path.exists():
            stats.deleted.append(name)
        elif freed:
            stats.compacted.append(name)
    return stats


async def enforce(redis: Redis, settings: Settings, now: float | None = None) -> RetentionStats | None:
    """One pass; None when another process holds the lock."""
    directory = settings.log_dir
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        checkpoint = Checkpoint(redis)
        offsets = (await checkpoint.load()).offsets  # before listing: a field whose file is gone was deleted
        stats = await asyncio.to_thread(_apply, directory, offsets, settings, time.time() if now is None else now)
        await checkpoint.forget(stats.deleted)
        # Erased people's lines (engine.events.erased) in segments closed and applied since the erase.
        _, _, rewritten = await asyncio.to_thread(erasure.compact, directory, (await checkpoint.load()).offsets)
        await checkpoint.save(rewritten)
    finally:
        os.close(fd)
    if stats.bytes_freed:
        log.info("event log retention: %d segments deleted, %d kept only their consent records, %d bytes freed",
                 len(stats.deleted), len(stats.compacted), stats.bytes_freed)
    return stats


def start(redis: Redis, settings: Settings, every_s: float = EVERY_S,
          first_after_s: float = FIRST_AFTER_S) -> asyncio.Task[object]:
    """Apply retention every ``every_s``, supervised (engine.tasks): a failing pass is logged once
    with its cause and retried sooner, backing off, so the loop never dies."""
    return tasks.start("log-retention", tasks.every(every_s, lambda: enforce(redis, settings)),
                       first_pause_s=first_after_s, first_backoff_s=min(10.0, every_s), max_backoff_s=every_s)
