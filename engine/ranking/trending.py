"""Real-time trending: exponentially decayed item counters in Redis.

A view at time t adds ``w * 2**((t - epoch_start) / half_life)`` to the item's score, so a write
never needs to read or rescale anything (one ZINCRBY). Scores grow within an epoch, so every
``EPOCH_HALF_LIVES`` half-lives a fresh key starts; a read merges the current and the previous
epoch with the previous one scaled down to the same clock. Old epochs expire on their own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from engine.store import keys

EPOCH_HALF_LIVES = 6
TOP = 200


@dataclass(frozen=True)
class TrendingClock:
    half_life_s: float

    @property
    def epoch_s(self) -> float:
        return self.half_life_s * EPOCH_HALF_LIVES

    def epoch(self, ts: float) -> int:
        return int(ts // self.epoch_s)

    def increment(self, weight: float, ts: float) -> tuple[str, float, int]:
        """(key, score increment, expire-at) for one weighted event at time ``ts``."""
        epoch = self.epoch(ts)
        growth = 2.0 ** ((ts - epoch * self.epoch_s) / self.half_life_s)
        return keys.trending(epoch), weight * growth, int((epoch + 2) * self.epoch_s)

    def merge(self, current: list[tuple[bytes, float]], previous: list[tuple[bytes, float]],
              now: float, n: int) -> list[tuple[str, float]]:
        """Top ``n`` items with scores decayed to ``now`` (in units of weighted events)."""
        epoch = self.epoch(now)
        scale_now = 2.0 ** (-(now - epoch * self.epoch_s) / self.half_life_s)
        scale_prev = scale_now * 2.0 ** (-EPOCH_HALF_LIVES)
        scores: dict[str, float] = {}
        for member, score in current:
            scores[member.decode()] = score * scale_now
        for member, score in previous:
            item = member.decode()
            scores[item] = scores.get(item, 0.0) + score * scale_prev
        return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:n]


class TrendingReader:
    """Reads trending from Redis at most once per ``ttl_s`` per process.

    Trending changes over minutes; a per-request read would put a Redis round trip and a sort on
    every recommendation for no visible gain.
    """

    def __init__(self, redis: Redis, clock: TrendingClock, ttl_s: float = 1.0) -> None:
        self._redis = redis
        self._clock = clock
        self._ttl_s = ttl_s
        self._cached: list[tuple[str, float]] = []
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def cached(self, now: float) -> list[tuple[str, float]] | None:
        """The list if it is fresh: most requests need no await at all."""
        return self._cached if now - self._fetched_at < self._ttl_s else None

    async def top(self, now: float | None = None) -> list[tuple[str, float]]:
        now = time.time() if now is None else now
        if now - self._fetched_at < self._ttl_s:
            return self._cached
        async with self._lock:
            if now - self._fetched_at >= self._ttl_s:
                epoch = self._clock.epoch(now)
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zrevrange(keys.trending(epoch), 0, TOP - 1, withscores=True)
                    pipe.zrevrange(keys.trending(epoch - 1), 0, TOP - 1, withscores=True)
                    current, previous = await pipe.execute()
                self._cached = self._clock.merge(current, previous, now, TOP)
                self._fetched_at = now
        return self._cached
