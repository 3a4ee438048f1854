"""Cluster mode refuses, at startup and by name, what is not cluster-safe yet."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from engine.ingest.cluster import ClusterApplier
from engine.profiles.shapes import ProfileConfig
from engine.ranking.trending import TrendingClock
from engine.runtime import Engine
from engine.store import keys
from engine.store.cluster import NOT_CLUSTER_SAFE, ClusterUnsupported
from tests.conftest import make_settings


def test_engine_refuses_cluster_mode_listing_what_is_not_safe(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "redis://127.0.0.1:1/0", redis_cluster=True)
    with pytest.raises(ClusterUnsupported) as refused:
        Engine(settings, "redis://127.0.0.1:1/0")
    message = str(refused.value)
    assert "VITRINE_REDIS_CLUSTER" in message and "engine.ingest.cluster" in message
    assert all(part in message for part in NOT_CLUSTER_SAFE)


def test_cluster_applier_refuses_the_parts_that_write_across_people() -> None:
    client = RedisCluster(host="127.0.0.1", port=1)
    with pytest.raises(ValueError, match="logins is not cluster-safe"):
        ClusterApplier(client, lambda item: None, ProfileConfig(), visitor_ttl_s=1, customer_ttl_s=1,
                       dedup_window_s=1, trending_clock=TrendingClock(3600), logins=lambda events: None)


@pytest.mark.parametrize("counter", ["tr:2941", "xp:homepage", "w:sku-1", "w:{odd}", "w:a}b{", "w:}{x}"])
def test_counter_tokens_share_the_counters_slot(counter: str) -> None:
    """An item or experiment id may hold braces: the token set still lands in the counter's slot."""
    token = keys.counter_token(counter, 7)
    assert key_slot(token.encode()) == key_slot(counter.encode())
    assert token != keys.counter_token(counter, 8)
