"""The pull API's reading of the delivery stream: documents decided for sending, oldest first,
from a cursor (a stream id this API returned, or unix seconds)."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from engine.store import cluster
from engine.triggers import keys

PAGE = 500


def cursor(since: str | None) -> str:
    """The exclusive start of a read: ``(<id>`` for a stream id, the first id at or after a time."""
    if not since:
        return "-"
    if "-" in since:
        return f"({since}"
    return f"{int(float(since) * 1000)}-0"


async def read(redis: Redis, since: str | None, trigger: str | None, limit: int) -> dict[str, Any]:
    start, out, last = cursor(since), [], since
    while len(out) < limit:
        entries = await redis.xrange(keys.names(cluster.on_cluster(redis)).deliveries, start, "+", count=PAGE)
        for entry_id, fields in entries:
            last = entry_id.decode()
            doc = orjson.loads(fields[b"doc"])
            if trigger is None or doc["trigger"] == trigger:
                out.append({"cursor": last, **doc})
                if len(out) == limit:
                    break
        if len(entries) < PAGE:
            break
        start = f"({last}"
    return {"deliveries": out, "next": last}
