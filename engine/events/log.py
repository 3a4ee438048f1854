"""The embedded mode's durable event log: append-only JSON lines on disk.

Every accepted event is written here before the API acknowledges it, so profiles can be caught up
after a crash (``engine.ingest.catchup``) or rebuilt (``vitrine replay``) and models trained (``vitrine
train``) from it. Each process writes its own segment files (no locking between API workers);
readers merge segments by acceptance time. fsync is group-committed: requests that arrive while
one fsync runs share the next one. A segment that rotates out is fsync'd by that same next commit,
in its thread: nothing waits on the disk on the event loop.

A write that fails (disk full, file too large, I/O error) is undone: the segment is truncated back
to its last complete line, so a torn line can only ever be the last line of a segment a crash
ended. A failed fsync fails every write it covered, and the segment is left for a new one (after
a failed fsync the kernel may have dropped those pages, and a later fsync would not say so).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from engine.events import erased
from engine.events.schema import Event

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Span:
    """Where one write's lines are: bytes ``[start, end)`` of the segment file named ``segment``."""

    segment: str
    start: int
    end: int


def dump(event: Event) -> bytes:
    """One event as compact JSON: the Kafka message value."""
    return orjson.dumps(event.model_dump(exclude_none=True, exclude_defaults=True))


def encode(event: Event) -> bytes:
    """One log line: ``dump`` without ``ts`` when it is the acceptance time (an event sent without
    a timestamp); readers put it back (``parse``)."""
    data = event.model_dump(exclude_none=True, exclude_defaults=True)
    if data["ts"] == data["rt"]:
        del data["ts"]
    return orjson.dumps(data) + b"\n"


def parse(line: bytes) -> dict[str, Any]:
    data = orjson.loads(line)
    data.setdefault("ts", data.get("rt"))
    return data


class EventLog:
    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20, fsync: bool = True) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._fd: int | None = None
        self._name = ""
        self._size = 0
        self._written = 0
        self._synced = 0  # writes covered by a finished commit (fsync'd, or failed: see _failed)
        self._failed: tuple[int, int, OSError] | None = None  # the last failed commit: (after, up to, error)
        self._sync_lock = asyncio.Lock()
        self._retired: list[int] = []  # rotated-out segments, closed once a commit has fsync'd them
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def written(self) -> int:
        """How many writes so far: the sequence number of the last one."""
        return self._written

    @property
    def settled(self) -> int:
        """Writes whose fate on disk is known: fsync'd (or its fsync failed), or all of them
        when fsync is off."""
        return self._synced if self._fsync else self._written

    def _open_segment(self) -> None:
        if self._fd is not None:
            self._retired.append(self._fd)
            self._fd = None
            if not self._fsync:
                self._close_retired(len(self._retired))
        name = f"events-{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        self._fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._name, self._size = name, 0

    def write(self, events: Iterable[Event]) -> Span | None:
        """Hand the lines to the OS (survives a process crash); None if there were none. Raises
        ``OSError`` with nothing written when the disk refuses them."""
        data = b"".join(encode(e) for e in events)
        if not data:
            return None
        if self._fd is None or self._size >= self._segment_bytes:
            self._open_segment()
        assert self._fd is not None
        start = self._size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            self._undo(start)
            raise
        self._size += len(data)
        self._written += 1
        return Span(self._name, start, self._size)

    def _undo(self, size: int) -> None:
        """Cut a partly written write off the segment; if even that fails, leave the segment (its
        torn last line is skipped by readers) for a new one."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            log.error("%s: cannot truncate a failed write (%s); starting a new segment", self._name, exc)
            self._retired.append(self._fd)
            self._fd = None

    async def sync(self, seq: int) -> None:
        """Wait until write ``seq`` is on disk (survives power loss), if fsync is configured.
        Raises the ``OSError`` of a failed fsync that covered it."""
        if not self._fsync:
            return
        async with self._sync_lock:
            if self._failed is not None and self._failed[0] < seq <= self._failed[1]:
                raise self._failed[2]
            if self._synced >= seq:
                return  # another request's fsync already covered us
            target, retired = self._written, len(self._retired)
            fds = [*self._retired, *([self._fd] if self._fd is not None else [])]
            try:
                await asyncio.to_thread(_fsync_all, fds)
            except OSError as exc:
                # Every write not known to be on disk fails (those made during this fsync too: they
                # went to the same files), and those files are left for a new segment.
                log.error("%s: fsync failed (%s); starting a new segment", self._name, exc)
                self._failed, self._synced = (self._synced, self._written, exc), self._written
                if self._fd is not None:
                    self._retired.append(self._fd)
                    self._fd = None
                self._close_retired(len(self._retired))
                raise
            self._synced = target
            self._close_retired(retired)  # the current one stays open; retired ones it covered close

    async def append(self, events: Iterable[Event]) -> Span | None:
        """Write and, if configured, wait until the lines are on disk."""
        span = self.write(events)
        await self.sync(self._written)
        return span

    def _close_retired(self, count: int) -> None:
        """Close the oldest ``count`` retired segments (those a finished commit covered)."""
        for fd in self._retired[:count]:
            os.close(fd)
        del self._retired[:count]

    def flush(self) -> None:
        """fsync everything written so far (blocking: for commands, not the event loop)."""
        fds = [*self._retired, *([self._fd] if self._fd is not None else [])]
        if self._fsync:
            _fsync_all(fds)
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
    """Oldest first: names start with their creation time."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"events-*{SUFFIX}"))


def read_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(offset after the line, event dict)`` for each complete line from byte ``start`` (a line
    boundary) up to ``end``. A torn last line (a crash mid-write) ends the segment; a corrupt
    line, and an event of an erased person (``engine.events.erased``), are skipped."""
    if end is not None and start >= end:
        return
    gone = erased.load(path.parent)
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        for line in fh:
            if not line.endswith(b"\n"):
                log.warning("%s: skipping a torn last line at byte %d (crash while writing?)", path, offset)
                return
            offset += len(line)
            try:
                data = parse(line)
            except orjson.JSONDecodeError:
                log.warning("%s: skipping a corrupt line ending at byte %d", path, offset)
            else:
                if not (gone and gone.covers(data)):
                    yield offset, data
            if end is not None and offset >= end:
                return


def read_span(directory: Path, span: Span, max_events: int) -> tuple[list[Event], int]:
    """Up to ``max_events`` events of ``span``, read back from its segment, and the offset after
    the last line read."""
    events: list[Event] = []
    offset = span.start
    for offset, data in read_lines(directory / span.segment, span.start, span.end):
        if (event := to_event(data, span.segment)) is not None:
            events.append(event)
        if len(events) >= max_events:
            break
    return events, offset if events else span.end


def to_event(data: dict[str, Any], where: str) -> Event | None:
    """A logged line as an Event; None (and a warning) for one this version cannot read."""
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        log.warning("%s: skipping an event that is not valid (%s)", where, str(exc).splitlines()[0])
        return None


def read_raw(directory: Path) -> Iterator[dict[str, Any]]:
    """Every logged event as a dict, merged across segments in acceptance-time order."""
    streams = [(data for _, data in read_lines(p)) for p in segments(directory)]
    yield from heapq.merge(*streams, key=lambda d: d.get("rt", 0.0))


def read_events(directory: Path) -> Iterator[Event]:
    for data in read_raw(directory):
        yield Event.model_validate(data)


def rewrite_segment(path: Path, data: bytes) -> None:
    """Replace a closed segment's content atomically (a temporary file, fsync, rename), keeping its
    modification time: retention goes by segment age, and a rewrite must not make one young."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(path)
