"""The embedded mode's durable event log: append-only JSON lines on disk.

Every accepted event is written here before the API acknowledges it, so profiles can be rebuilt
(``vitrine replay``) and models trained (``vitrine train``) from it. Each process writes its own
segment files (no locking between API workers); readers merge segments by acceptance time.
fsync is group-committed: requests that arrive while one fsync runs share the next one. A
segment that rotates out is fsync'd by that same next commit, in its thread: nothing waits on the
disk on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from engine.events import Event

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


def dump(event: Event) -> bytes:
    """One event as compact JSON: the log's line and the Kafka message value."""
    return orjson.dumps(event.model_dump(exclude_none=True, exclude_defaults=True))


def encode(event: Event) -> bytes:
    return dump(event) + b"\n"


class EventLog:
    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self._written = 0
        self._synced = 0
        self._sync_lock = asyncio.Lock()
        self._retired: list[int] = []  # rotated-out segments, closed once a commit has fsync'd them
        directory.mkdir(parents=True, exist_ok=True)

    def _open_segment(self) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
            if not self._fsync:
                self._close_retired(len(self._retired))
        name = f"events-{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        self._fd = os.open(self._dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0

    def write(self, events: Iterable[Event]) -> int:
        """Hand the lines to the OS (survives a process crash); returns a sequence number."""
        data = b"".join(encode(e) for e in events)
        if not data:
            return self._written
        if self._fd is None or self._size >= self._segment_bytes:
            self._open_segment()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
        self._written += 1
        return self._written

    async def append(self, events: Iterable[Event]) -> None:
        """Write and, if configured, wait until the lines are on disk (survives power loss)."""
        seq = self.write(events)
        if not self._fsync or self._fd is None:
            return
        async with self._sync_lock:
            if self._synced >= seq:
                return  # another request's fsync already covered us
            target, fds = self._written, [*self._retired, self._fd]
            await asyncio.to_thread(_fsync_all, fds)
            self._synced = target
            self._close_retired(len(fds) - 1)

    def _close_retired(self, count: int) -> None:
        """Close the oldest ``count`` retired segments (those a finished commit covered)."""
        for fd in self._retired[:count]:
            os.close(fd)
        del self._retired[:count]

    def append_sync(self, events: Iterable[Event]) -> None:
        self.write(events)
        if self._fsync and self._fd is not None:
            _fsync_all([*self._retired, self._fd])
            self._synced = self._written
            self._close_retired(len(self._retired))

    def close(self) -> None:
        if self._fsync:
            _fsync_all(self._retired)
        self._close_retired(len(self._retired))
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)


def segments(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"events-*{SUFFIX}"))


def _read_segment(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n"):
                log.warning("%s:%d: skipping a torn last line (crash while writing?)", path, number)
                return
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("%s:%d: skipping a corrupt line", path, number)


def read_raw(directory: Path) -> Iterator[dict[str, Any]]:
    """Every logged event as a dict, merged across segments in acceptance-time order."""
    streams = [_read_segment(p) for p in segments(directory)]
    yield from heapq.merge(*streams, key=lambda d: d.get("rt", 0.0))


def read_events(directory: Path) -> Iterator[Event]:
    for data in read_raw(directory):
        yield Event.model_validate(data)
