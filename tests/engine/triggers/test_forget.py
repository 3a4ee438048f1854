"""An erasure's side of the triggers on a real Redis: the Kafka outbox's documents and the
per-trigger keys of a trigger no longer in the rules (found through the counted triggers' index)."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis

from engine.triggers import keys
from engine.triggers.forget import forget
from engine.triggers.queue import Queue


def test_forget_reaches_the_topic_outbox_and_triggers_gone_from_the_rules(redis_url: str) -> None:
    async def scenario() -> None:
        redis = Redis.from_url(redis_url)
        await redis.flushdb()
        names = keys.names(False)
        topic = Queue(redis, names.topic)
        async with redis.pipeline(transaction=True) as pipe:
            for n, (visitor, customer) in enumerate((("v-gone", None), ("v-kept", "c-kept"), ("v-other", "c-gone"))):
                topic.put(pipe, f"doc-{n}", 1.0, {"id": f"doc-{n}", "visitor_id": visitor, "customer_id": customer})
            pipe.sadd(names.ids, "retired")
            pipe.sadd(names.people("retired", "sent"), "c-gone", "v-kept")
            pipe.hset(names.revenue("retired", "sent"), mapping={"c-gone": 4.0, "v-kept": 2.0})
            await pipe.execute()
        assert await forget(redis, ["v-gone"], ["c-gone"], trigger_ids=["live"]) == 4
        assert await redis.hkeys(keys.data(names.topic)) == [b"doc-1"]
        assert await redis.zrange(names.topic, 0, -1) == [b"doc-1"]
        assert await redis.smembers(names.people("retired", "sent")) == {b"v-kept"}
        assert await redis.hgetall(names.revenue("retired", "sent")) == {b"v-kept": b"2.0"}
        assert await forget(redis, ["v-gone"], ["c-gone"], trigger_ids=["live"]) == 0  # idempotent
        assert orjson.loads(await redis.hget(keys.data(names.topic), "doc-1"))["visitor_id"] == "v-kept"
        await redis.aclose()

    asyncio.run(scenario())
