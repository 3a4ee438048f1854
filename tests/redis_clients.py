"""Raw Redis clients for tests, whichever Redis the session runs (``VITRINE_TEST_REDIS``).

On the session's Redis Cluster a test's client must follow the slot map, as the engine's does
(engine.store.connect.connect_cluster); elsewhere a plain client. Tests open clients through these
functions so that one test module runs on both."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from engine.store.connect import connect_cluster

CLUSTER_MODE = os.environ.get("VITRINE_TEST_REDIS", "single") == "cluster"
cluster_ports: set[int] = set()  # the session cluster's nodes, once tests/conftest.py started it


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a node of the session's Redis Cluster."""
    if not url.startswith("redis://"):
        return False
    return urlsplit(url).port in cluster_ports


class WholeCluster(RedisCluster):
    """A cluster client whose ``keys`` and ``dbsize`` cover every primary, as on one Redis
    (redis-py asks one node): a test's "no key left" must see them all."""

    def keys(self, pattern: str = "*", **kwargs: Any) -> Any:
        return super().keys(pattern, target_nodes=RedisCluster.PRIMARIES, **kwargs)

    def dbsize(self, **kwargs: Any) -> Any:
        return super().dbsize(target_nodes=RedisCluster.PRIMARIES, **kwargs)


def sync_client(url: str) -> redis.Redis | RedisCluster:
    """A blocking client: a cluster client on the session's cluster, else ``redis.Redis``."""
    if is_cluster_url(url):
        return WholeCluster.from_url(url, socket_timeout=10)
    return redis.Redis.from_url(url)


def async_client(url: str) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """An asyncio client: a cluster client on the session's cluster, else ``redis.asyncio.Redis``."""
    if is_cluster_url(url):
        return connect_cluster(url, timeout_s=10)
    return redis.asyncio.Redis.from_url(url)


def redis_environment(url: str) -> dict[str, str]:
    """The settings a spawned ``vitrine`` command needs to reach ``url``: on the session's cluster
    ``VITRINE_REDIS_CLUSTER`` too."""
    return {"VITRINE_REDIS_URL": url, **({"VITRINE_REDIS_CLUSTER": "true"} if is_cluster_url(url) else {})}
