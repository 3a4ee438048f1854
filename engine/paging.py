"""Pages of one recommendation list: a next page never repeats an item of the earlier ones.

A list is asked page by page with ``offset`` and the ``recommendation_id`` its first page came
with. The ranking can move between two requests (the visitor viewed an item, a model was
promoted), so a page cannot be a slice of a new ranking: the items served under an id are kept in
Redis for a visit's length (``VITRINE_SESSION_TIMEOUT_S``), the next page is ranked without them,
and a page asked again (a back button) comes back as it was. Without Redis the page is ranked
without that memory (and marked ``degraded``), as every list is when Redis is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.recommend import Recommender, RecoRequest
from engine.store import keys

log = logging.getLogger(__name__)
MAX_ITEMS = 500  # served under one recommendation id, all pages together


class Pager:
    def __init__(self, recommender: Recommender, redis: Redis, ttl_s: float, timeout_s: float) -> None:
        self._recommender = recommender
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._timeout_s = timeout_s

    async def page(self, req: RecoRequest, offset: int, recommendation_id: str | None) -> dict[str, Any]:
        """Items ``offset`` to ``offset + req.n`` of the list ``recommendation_id`` names (a new list
        without one). ``req.visitor_id`` is required: the list is the visitor's."""
        if offset + req.n > MAX_ITEMS:
            raise ValueError(f"offset + n must be at most {MAX_ITEMS}")
        key = keys.pages(req.visitor_id or "")
        kept, degraded = await self._load(key, recommendation_id) if recommendation_id else (None, False)
        served: list[dict[str, Any]] = kept["items"] if kept else []
        head = kept["head"] if kept else None
        wanted = offset + req.n
        if len(served) < wanted:
            body = await self._recommender.recommend(req._replace(
                n=wanted - len(served), exclude=frozenset(i["item_id"] for i in served)))
            served = served + body.pop("items")
            degraded = degraded or body.get("degraded", False)
            if recommendation_id:
                body["recommendation_id"] = recommendation_id
            head = body
            if not degraded:
                await self._save(key, head["recommendation_id"], head, served)
        out = dict(head or {}, items=served[offset:wanted])
        if degraded:
            out["degraded"] = True
        return out

    async def _load(self, key: str, recommendation_id: str) -> tuple[dict[str, Any] | None, bool]:
        """(what was served under the id, or None; whether Redis failed)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._redis.hget(key, recommendation_id)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("page list not read (%s): the page is ranked without it", type(exc).__name__)
            return None, True
        return (orjson.loads(raw) if raw else None), False

    async def _save(self, key: str, recommendation_id: str, head: dict[str, Any],
                    served: list[dict[str, Any]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(key, recommendation_id, orjson.dumps({"head": head, "items": served}))
                    pipe.pexpire(key, self._ttl_ms)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("page list not stored (%s): the next page may repeat this one's items",
                        type(exc).__name__)
