"""The outbound topic (Kafka mode): each document decided for sending is also produced to a topic,
keyed by person id, signed as the webhook's is, so the shop's own consumers can act on it.

engine/ does not know Kafka: the edge injects a ``Publisher`` (``streaming.outbound``). The runner
queues the document durably (``tg:{tg}:k``, a ``Queue``) in the decision's own transaction;
``publish_due`` produces what is queued and removes it once the brokers acknowledged it. A
process that dies in between, or brokers that do not answer, leave the claim's lease to run out
and the document is produced again, with the same ``id``: one record per delivery normally, a
repeat with the same ``Idempotency-Key`` after a failure (consumers deduplicate on it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from engine.store import cluster
from engine.triggers import keys, webhook
from engine.triggers.queue import Queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundRecord:
    key: bytes  # the person: customer id, else visitor id
    value: bytes  # the document, as the webhook's body
    headers: list[tuple[str, bytes]]


class PublishFailed(Exception):
    """The brokers did not acknowledge every record: they are produced again after the lease."""


class Publisher(Protocol):
    timeout_s: float  # longest a publish waits for the acknowledgements

    async def publish(self, records: list[OutboundRecord]) -> None:
        """Returns once every record is acknowledged; raises ``PublishFailed`` otherwise."""


def record(doc: dict[str, Any], secret: str, now: float) -> OutboundRecord:
    """``Idempotency-Key`` and, with a secret, ``Vitrine-Signature`` (``webhook.signature``)."""
    body = orjson.dumps(doc)
    headers = [("Idempotency-Key", str(doc["id"]).encode())]
    if secret:
        headers.append((webhook.HEADER, webhook.signature(secret, int(now), body).encode()))
    return OutboundRecord(str(doc["customer_id"] or doc["visitor_id"]).encode(), body, headers)


class TopicOutbox:
    def __init__(self, redis: Redis, publisher: Publisher, secret: str) -> None:
        self.redis = redis
        self.publisher = publisher
        self.secret = secret
        self.queue = Queue(redis, keys.TOPIC)
        self.names = keys.names(cluster.on_cluster(redis))
        self.lease_s = publisher.timeout_s * 2 + 5  # also the wait before a failed publish is retried

    def put(self, pipe: Pipeline, doc: dict[str, Any], now: float) -> None:
        """Queued on the decision's transaction."""
        self.queue.put(pipe, doc["id"], now, doc)

    async def publish_due(self, now: float, limit: int) -> int:
        """Produce up to ``limit`` queued documents: the number acknowledged."""
        claimed = await self.queue.claim(now, self.lease_s, limit)
        if not claimed:
            return 0
        docs = [orjson.loads(raw) for _, raw in claimed]
        try:
            await self.publisher.publish([record(doc, self.secret, time.time()) for doc in docs])
        except PublishFailed as exc:
            log.warning("%d outbound records not acknowledged, produced again in %.0f s (%s)", len(docs),
                        self.lease_s, exc)
            async with self.redis.pipeline(transaction=False) as pipe:
                for doc in docs:
                    pipe.hincrby(self.names.stats(doc["trigger"]), "topic:retried", 1)
                await pipe.execute()
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            for (member, raw), doc in zip(claimed, docs):
                await self.queue.done(pipe, member, raw)
                pipe.hincrby(self.names.stats(doc["trigger"]), "topic:produced", 1)
            await pipe.execute()
        return len(claimed)
