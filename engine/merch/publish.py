"""Publishing the rules file: an atomic write, and a history of what was published to roll back to.

The file stays the one source of truth (``VITRINE_RULES_FILE``): every process already polls it,
so a publish is a write that each of them picks up, and an editor or a deploy script that writes
the file keeps working. The write goes to a temporary file in the same folder, is flushed to disk,
then renamed over the file: a poll never sees half a file. The history is a folder beside the file
(``.rules.yaml.history/``), one file per published version, named so that it sorts by time.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from engine.merch.live import version_of

_ENTRY = re.compile(r"^(\d{8}T\d{6}\d{6}Z)-([0-9a-f]{12})\.yaml$")


@dataclass(frozen=True)
class Published:
    version: str
    published_at: float
    path: Path


def history_dir(rules_file: Path) -> Path:
    return rules_file.parent / f".{rules_file.name}.history"


def write_atomically(path: Path, text: bytes) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old bytes or the new, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # the file's own permissions, not mkstemp's 0600: other users' processes may read the rules
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def publish(rules_file: Path, text: bytes, keep: int, now: float | None = None) -> Published:
    """Record ``text`` in the history, then make it the rules file. The caller validated it. The
    first publish records the file it replaces too, so that it can be rolled back to."""
    now = time.time() if now is None else now
    if not history(rules_file) and rules_file.exists():  # the file as it was before the first publish
        before = rules_file.stat().st_mtime
        _record(rules_file, rules_file.read_bytes(), min(before, now - 1e-6))
    entry = _record(rules_file, text, now)
    write_atomically(rules_file, text)
    for old in history(rules_file)[keep:]:
        old.path.unlink(missing_ok=True)
    return Published(version_of(text), now, entry)


def _record(rules_file: Path, text: bytes, at: float) -> Path:
    folder = history_dir(rules_file)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + f"{int(at % 1 * 1e6):06d}Z"
    entry = folder / f"{stamp}-{version_of(text)}.yaml"
    write_atomically(entry, text)
    return entry


def history(rules_file: Path) -> list[Published]:
    """What was published, newest first."""
    folder = history_dir(rules_file)
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        match = _ENTRY.match(path.name)
        if match:
            stamp = match.group(1)
            seconds = calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
            entries.append(Published(match.group(2), seconds + int(stamp[15:21]) / 1e6, path))
    return sorted(entries, key=lambda e: e.path.name, reverse=True)


def published_text(rules_file: Path, version: str) -> bytes | None:
    """The text of a published ``version`` (its newest copy), or None when the history has none."""
    for entry in history(rules_file):
        if entry.version == version:
            return entry.path.read_bytes()
    return None
