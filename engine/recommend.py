"""Recommendations for a placement: profile + model + catalogue -> ranked, explained items.

One Redis read (two when only the cookie knows the customer), then pure scenario functions in the
placement's fallback order until the list is full. If Redis is slow or down, the list is built
from the model alone and marked ``degraded``: a shop page must never wait on us.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.catalog import CatalogueCache
from engine.model import ModelHolder
from engine.profile_store import load_profiles
from engine.profiles import CustomerProfile, VisitorProfile
from engine.scenarios import DEFAULT_PLACEMENTS, SCENARIOS, Context, Pick, base_exclusions
from engine.settings import Settings
from engine.trending import TrendingReader

log = logging.getLogger(__name__)


class UnknownPlacement(ValueError):
    pass


@dataclass(frozen=True)
class RecoRequest:
    placement: str
    visitor_id: str | None = None
    customer_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    n: int = 10


def new_recommendation_id() -> str:
    return secrets.token_hex(8)


class Recommender:
    def __init__(self, redis: Redis, settings: Settings, models: ModelHolder, catalogue: CatalogueCache,
                 trending: TrendingReader, placements: dict[str, tuple[str, ...]] | None = None) -> None:
        self._redis = redis
        self._settings = settings
        self.models = models
        self.catalogue = catalogue
        self._trending = trending
        self.placements = placements or dict(DEFAULT_PLACEMENTS)
        self._degraded = 0
        self._degraded_logged_at = float("-inf")

    def check_placement(self, placement: str) -> tuple[str, ...]:
        chain = self.placements.get(placement)
        if chain is None:
            raise UnknownPlacement(
                f"unknown placement {placement!r}; known: {', '.join(sorted(self.placements))}")
        return chain

    async def _read(self, req: RecoRequest, chain: tuple[str, ...]
                    ) -> tuple[VisitorProfile, CustomerProfile | None, str | None, list[tuple[str, float]], bool]:
        """Profile and trending within the time budget; on failure, empty ones and degraded=True."""
        needs_trending = "trending" in chain
        try:
            async with asyncio.timeout(self._settings.redis_timeout_s):
                visitor, customer, cid = await load_profiles(self._redis, req.visitor_id, req.customer_id)
                trend = await self._trending.top() if needs_trending else []
            return visitor, customer, cid, trend, False
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded += 1
            now = time.monotonic()
            if now - self._degraded_logged_at > 10:  # an outage must not flood the log
                log.warning("redis unavailable (%s): %d recommendations served from the model alone "
                            "since the last warning", type(exc).__name__, self._degraded)
                self._degraded, self._degraded_logged_at = 0, now
            return VisitorProfile(), None, req.customer_id, [], True

    async def recommend(self, req: RecoRequest) -> dict[str, Any]:
        chain = self.check_placement(req.placement)
        visitor, customer, customer_id, trend, degraded = await self._read(req, chain)
        model = self.models.current
        catalogue = self.catalogue.current
        ctx = Context(
            visitor_id=req.visitor_id,
            customer_id=customer_id,
            visitor=visitor,
            customer=customer,
            now=time.time(),
            n=req.n,
            session_timeout_s=self._settings.session_timeout_s,
            item_id=req.item_id,
            category=req.category,
            exclude_purchased=self._settings.exclude_purchased,
            trending=trend,
        )
        ctx.excluded = base_exclusions(ctx)
        picks: list[Pick] = []
        seen: set[str] = set()
        for name in chain:
            if len(picks) >= req.n:
                break
            ctx.excluded |= seen
            for pick in SCENARIOS[name](model, catalogue, ctx):
                if pick.item_id not in seen:
                    seen.add(pick.item_id)
                    picks.append(pick)
                    if len(picks) >= req.n:
                        break
        response: dict[str, Any] = {
            "recommendation_id": new_recommendation_id(),
            "placement": req.placement,
            "model_version": model.version if model else None,
            "items": [{"item_id": p.item_id, "score": round(p.score, 6), "reason": p.reason} for p in picks],
        }
        if degraded:
            response["degraded"] = True
        return response
