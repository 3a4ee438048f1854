"""Erasing a person from the triggers' shared keys, which ``DELETE /v1/people/{id}`` runs after
``engine.customers.people.erase`` has erased their own: the occurrences waiting for them, the
fire-once index, the report's people, conversions and revenue, the delivery and control-group
streams, the documents still to be posted or produced, and the dead letters. After it no key of
the triggers names them, and nothing is sent to them.

The per-trigger keys are found through the triggers with counters (``Names.ids``) and those the
rules define now. The streams and outboxes are read whole: they are bounded
(``VITRINE_TRIGGER_KEPT``, the documents in flight), and an erasure is rare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from redis.asyncio import Redis

from engine.store import cluster
from engine.triggers import keys

CHUNK = 1000


async def forget(redis: Redis, visitor_ids: list[str], customer_ids: list[str], trigger_ids: Iterable[str]) -> int:
    """Remove every entry of the triggers' shared keys that names one of these ids; the number
    removed."""
    if not visitor_ids and not customer_ids:
        return 0
    names = keys.names(cluster.on_cluster(redis))
    known = {tid.decode() for tid in await redis.smembers(names.ids)} | set(trigger_ids)
    people = [*customer_ids, *visitor_ids]
    members = [f"{tid}|{scope}:{pid}" for tid in known
               for scope, ids in (("c", customer_ids), ("v", visitor_ids)) for pid in ids]

    def theirs(doc: dict[str, Any]) -> bool:
        return doc.get("visitor_id") in visitor_ids or doc.get("customer_id") in customer_ids

    removed = 0
    async with redis.pipeline(transaction=False) as pipe:  # every key in the {tg} slot on a cluster
        for tid in sorted(known):
            for arm in ("sent", "control"):
                pipe.srem(names.people(tid, arm), *people)
                pipe.srem(names.converted(tid, arm), *people)
                pipe.hdel(names.revenue(tid, arm), *people)
        if members:
            pipe.zrem(names.occurrences, *members)
            pipe.hdel(names.once, *members)
            pipe.hdel(keys.data(names.occurrences), *members)  # the occurrences' data: not counted again
        replies = await pipe.execute()
        removed += sum(replies[:-1] if members else replies)
    for stream in (names.deliveries, names.held_out):
        removed += await _forget_in_stream(redis, stream, theirs)
    for queue, wrapped in ((names.outbox, True), (names.topic, False)):
        found = await redis.hgetall(keys.data(queue))
        gone = [m for m, raw in found.items() if theirs(_doc(raw, wrapped))]
        if gone:
            removed += await redis.zrem(queue, *gone)
            await redis.hdel(keys.data(queue), *gone)
    for raw in await redis.lrange(names.dead, 0, -1):
        if theirs(_doc(raw, True)):
            removed += await redis.lrem(names.dead, 0, raw)
    return removed


def _doc(raw: bytes, wrapped: bool) -> dict[str, Any]:
    """A queued document: the webhook's entries and dead letters hold it under ``doc``."""
    data = orjson.loads(raw)
    return data.get("doc", {}) if wrapped else data


async def _forget_in_stream(redis: Redis, stream: str, theirs: Callable[[dict[str, Any]], bool]) -> int:
    removed, start = 0, "-"
    while True:
        entries = await redis.xrange(stream, min=start, count=CHUNK)
        gone = [entry_id for entry_id, fields in entries if theirs(orjson.loads(fields[b"doc"]))]
        if gone:
            removed += await redis.xdel(stream, *gone)
        if len(entries) < CHUNK:
            return removed
        start = "(" + entries[-1][0].decode()
