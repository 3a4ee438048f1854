"""Opening a Redis client from a URL, and asking whether it answers."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

SENTINEL_SCHEME = "redis+sentinel://"


def connect_cluster(url: str, *, timeout_s: float | None = None) -> RedisCluster:
    """A Redis Cluster client from the URL of any one of its nodes: redis-py reads the slot map
    from it and follows ``MOVED`` redirections and failovers."""
    return RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=min(timeout_s or 2.0, 2.0))


def connect(url: str, *, timeout_s: float | None = None) -> Redis:
    """A URL redis-py reads (``redis://``, ``rediss://``, ``unix://``), or
    ``redis+sentinel://[[user]:password@]host:26379[,host:26379...]/<master name>[/<db>]
    [?sentinel_password=...]`` for a primary managed by Redis Sentinel: redis-py asks the sentinels
    where the primary is and follows a failover. The URL's credentials are the primary's; sentinels
    that require a password of their own get ``sentinel_password``.

    ``timeout_s`` bounds every command: without it a Redis that accepts the connection but never
    answers would hold the caller (poll loop, admin route, worker) forever."""
    connect_s = min(timeout_s or 2.0, 2.0)
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": connect_s,
                               "health_check_interval": 30, "max_connections": 256}
    if url.startswith(SENTINEL_SCHEME):
        parts = urlsplit(url)
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, password = credentials.partition(":")
        master, _, db = parts.path.strip("/").partition("/")
        sentinels = [(host, int(port or 26379)) for host, _, port in (h.partition(":") for h in hosts.split(","))]
        sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[0]
        sentinel = Sentinel(sentinels, socket_connect_timeout=connect_s, socket_timeout=timeout_s,
                            sentinel_kwargs={"password": sentinel_password, "socket_connect_timeout": connect_s,
                                             "socket_timeout": timeout_s})
        return sentinel.master_for(master or "mymaster", db=int(db or 0), username=unquote(user) or None,
                                   password=unquote(password) or None, **options)
    return Redis.from_url(url, **options)


def connect_to(url: str, *, cluster: bool, timeout_s: float | None = None) -> Redis | RedisCluster:
    """``connect_cluster`` when ``cluster`` (``VITRINE_REDIS_CLUSTER``), else ``connect``."""
    return (connect_cluster if cluster else connect)(url, timeout_s=timeout_s)


async def answers(redis: Redis, timeout_s: float = 0.5) -> str:
    """``"ok"``, or why not: what a readiness probe reports."""
    try:
        async with asyncio.timeout(timeout_s):
            await redis.ping()
        return "ok"
    except (RedisError, OSError, TimeoutError) as exc:
        return f"unavailable: {type(exc).__name__}"
