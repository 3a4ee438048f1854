"""Where the merchandiser console's sign-in sessions live: one hash per session with a sliding
TTL, so that every API worker process knows every session and an idle one goes by itself."""

from __future__ import annotations

from redis.asyncio import Redis

from engine.store import keys


async def save_session(redis: Redis, session_id: str, fields: dict[str, str], ttl_s: int) -> None:
    key = keys.console_session(session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, ttl_s)
        await pipe.execute()


async def load_session(redis: Redis, session_id: str, ttl_s: int) -> dict[str, str]:
    """The session's fields, its lifetime renewed; empty when there is no such session."""
    key = keys.console_session(session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(key)
        pipe.expire(key, ttl_s)
        stored, _ = await pipe.execute()
    return {k.decode(): v.decode() for k, v in stored.items()}


async def drop_session(redis: Redis, session_id: str) -> None:
    await redis.delete(keys.console_session(session_id))
