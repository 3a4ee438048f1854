"""Cluster mode: the engine starts with the cluster-safe parts and names, at startup, what is off."""

from __future__ import annotations

import logging
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
from engine.store.cluster_reads import ClusterReader
from tests.conftest import make_settings


def test_engine_in_cluster_mode_uses_the_cluster_parts_and_names_what_is_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, "redis://127.0.0.1:1/0", redis_cluster=True)
    with caplog.at_level(logging.WARNING, logger="engine.runtime"):
        engine = Engine(settings, "redis://127.0.0.1:1/0")
    assert isinstance(engine.redis, RedisCluster)
    assert isinstance(engine.applier, ClusterApplier) and isinstance(engine.reads, ClusterReader)
    assert all(part in caplog.text for part in NOT_CLUSTER_SAFE)
    with pytest.raises(ClusterUnsupported, match="triggers"):
        engine.trigger_runner()


def test_cluster_applier_refuses_the_parts_that_write_across_people() -> None:
    client = RedisCluster(host="127.0.0.1", port=1)
    with pytest.raises(ValueError, match="triggers is not cluster-safe"):
        ClusterApplier(client, lambda item: None, ProfileConfig(), visitor_ttl_s=1, customer_ttl_s=1,
                       dedup_window_s=1, trending_clock=TrendingClock(3600), triggers=object())
    ClusterApplier(client, lambda item: None, ProfileConfig(), visitor_ttl_s=1, customer_ttl_s=1,
                   dedup_window_s=1, trending_clock=TrendingClock(3600), logins=lambda events: None)


@pytest.mark.parametrize("counter", ["tr:2941", "xp:homepage", "w:sku-1", "w:{odd}", "w:a}b{", "w:}{x}"])
def test_counter_tokens_share_the_counters_slot(counter: str) -> None:
    """An item or experiment id may hold braces: the token set still lands in the counter's slot."""
    token = keys.counter_token(counter, 7)
    assert key_slot(token.encode()) == key_slot(counter.encode())
    assert token != keys.counter_token(counter, 8)
