"""Erasure tombstones: the people whose logged events no reader may use any more.

``DELETE /v1/people/{id}`` appends one line per erase to ``erased.jsonl`` in the log directory: the
hashed ids (SHA-256, so the tombstone does not keep the ids themselves) and the acceptance time of
the erase. Every reader of the log (catch-up and ``vitrine replay``, training, export) goes through
``engine.events.log.read_lines``, which skips an event of an erased visitor or customer accepted
up to that time: replay does not bring them back and the next model has no row for them, at once.
The bytes themselves go when their segment is rewritten (``engine.ingest.erasure``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

FILE = "erased.jsonl"


def digest(person_id: str) -> str:
    return hashlib.sha256(person_id.encode()).hexdigest()


@dataclass
class Erased:
    visitors: dict[str, float] = field(default_factory=dict)  # digest -> erased at (acceptance time)
    customers: dict[str, float] = field(default_factory=dict)

    def covers(self, data: dict[str, Any]) -> bool:
        """Whether a logged event (a log line's dict) belongs to an erased person."""
        rt = data.get("rt", 0.0)
        for ids, key in ((self.visitors, "visitor_id"), (self.customers, "customer_id")):
            person = data.get(key)
            if ids and person and (at := ids.get(digest(person))) is not None and rt <= at:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.visitors or self.customers)


_cache: dict[Path, tuple[tuple[int, int], Erased]] = {}


def load(directory: Path) -> Erased:
    """The directory's tombstones, re-read only when the file changed."""
    path = directory / FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        return Erased()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    erased = Erased()
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for ids, key in ((erased.visitors, "visitors"), (erased.customers, "customers")):
                for h in row.get(key, ()):
                    ids[h] = max(ids.get(h, 0.0), float(row["at"]))
    _cache[path] = (stamp, erased)
    return erased


def record(directory: Path, visitor_ids: list[str], customer_ids: list[str], at: float) -> None:
    """Append (and fsync) one tombstone: the erase holds from the moment this returns."""
    append_record(directory / FILE, {"at": at, "visitors": [digest(v) for v in visitor_ids],
                                     "customers": [digest(c) for c in customer_ids]}, 0o644)


def append_record(path: Path, record: dict[str, Any], mode: int) -> None:
    """One JSON line appended and fsynced: a record that holds once this returns (tombstones here,
    the audit log of exports and erases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, mode)
    try:
        os.write(fd, orjson.dumps(record) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
