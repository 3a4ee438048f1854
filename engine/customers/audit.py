"""The admin audit log: one JSON line per erase, export or merge in ``<data dir>/audit.jsonl``.

It records who asked (the caller's ``X-Requested-By`` reference, e.g. a ticket number), when,
what, and which ids as SHA-256 digests (``engine.events.erased.digest``): it holds no personal
data, and an erased person's ids are not kept in clear by the record of their erasure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from engine.events.erased import append_record, digest

FILE = "audit.jsonl"


def record(data_dir: Path, action: str, by: str, visitor_ids: list[str], customer_ids: list[str], at: float,
           **facts: Any) -> None:
    append_record(data_dir / FILE, {"at": at, "action": action, "by": by, "visitors": [digest(v) for v in visitor_ids],
                                    "customers": [digest(c) for c in customer_ids], **facts}, 0o600)


def read(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / FILE
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
