"""Rewriting log segments without the lines of erased people (``engine.events.erased``).

A segment is rewritten only once it is closed (no running process appends to it) and fully
applied (its checkpoint offset reaches its end), because appends to a replaced file would be lost
and catch-up offsets must keep pointing at line boundaries. ``DELETE /v1/people/{id}`` rewrites
what it can at once; the hourly retention pass (``engine.ingest.retention``) rewrites the rest, so
the bytes are gone at most an hour after their segment closes (it closes at
``VITRINE_LOG_SEGMENT_BYTES`` or when its process stops). Readers skip those lines meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson

from engine.events import erased
from engine.events.log import rewrite_segment, segments

DONE = ".erased-done"  # the tombstone file's size when a pass last left nothing pending


def _open_segments(log_dir: Path) -> set[str]:
    """Segments a running process may still append to: each live process's newest one (names
    carry the writer's pid; a segment of a process that is gone is closed)."""
    newest: dict[str, str] = {}
    for path in segments(log_dir):
        pid = path.stem.rsplit("-", 1)[-1]
        newest[pid] = path.name  # sorted oldest first: the last one wins
    live = set()
    for pid, name in newest.items():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pid), 0)
            live.add(name)
    return live


def compact(log_dir: Path, offsets: dict[str, int]) -> tuple[list[str], list[str], dict[str, int]]:
    """Rewrite every closed, fully applied segment that holds an erased person's line without it;
    (rewritten, pending, their new checkpoint offsets). A pending one (open, or not applied yet)
    is left to a later pass: readers skip its erased lines meanwhile."""
    gone = erased.load(log_dir)
    if not gone:
        return [], [], {}
    marker = log_dir / DONE
    stamp = str((log_dir / erased.FILE).stat().st_size)
    if marker.exists() and marker.read_text() == stamp:
        return [], [], {}  # nothing erased since a pass that left nothing pending: no need to read the log
    open_now = _open_segments(log_dir)
    rewritten, pending, new_offsets = [], [], {}
    for path in segments(log_dir):
        with path.open("rb") as fh:
            lines = fh.readlines()
        complete = [line for line in lines if line.endswith(b"\n")]
        kept = [line for line in complete if not _erased_line(gone, line)]
        if len(kept) == len(complete):
            continue
        size = path.stat().st_size
        if path.name in open_now or offsets.get(path.name, -1) < size:
            pending.append(path.name)
            continue
        data = b"".join(kept)
        rewrite_segment(path, data)
        rewritten.append(path.name)
        new_offsets[path.name] = len(data)
    if not pending:
        marker.write_text(stamp)
    return rewritten, pending, new_offsets


def _erased_line(gone: erased.Erased, line: bytes) -> bool:
    try:
        return gone.covers(orjson.loads(line))
    except orjson.JSONDecodeError:
        return False
