"""Cluster mode: the engine starts with the cluster parts and says so at startup."""

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
from engine.store.cluster_reads import ClusterReader
from engine.triggers import keys as trigger_keys
from tests.conftest import make_settings


def test_engine_in_cluster_mode_uses_the_cluster_parts_and_says_nothing_is_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, "redis://127.0.0.1:1/0", redis_cluster=True)
    with caplog.at_level(logging.INFO, logger="engine.runtime"):
        engine = Engine(settings, "redis://127.0.0.1:1/0")
    assert isinstance(engine.redis, RedisCluster)
    assert isinstance(engine.applier, ClusterApplier) and isinstance(engine.reads, ClusterReader)
    assert "every feature runs on a Redis Cluster" in caplog.text
    runner = engine.trigger_runner()  # triggers run on a cluster, with its key names
    assert runner.names.cluster and engine.catalogue_changes.queue.due_key == "{items}:tg:i"


def test_cluster_applier_takes_the_login_merges_and_the_trigger_hook() -> None:
    client = RedisCluster(host="127.0.0.1", port=1)
    app = ClusterApplier(client, lambda item: None, ProfileConfig(), visitor_ttl_s=1, customer_ttl_s=1,
                         dedup_window_s=1, trending_clock=TrendingClock(3600), logins=lambda events: None,
                         triggers=object())
    assert app._logins is not None and app._triggers is not None


@pytest.mark.parametrize("counter", ["tr:2941", "xp:homepage", "w:sku-1", "w:{odd}", "w:a}b{", "w:}{x}"])
def test_counter_tokens_share_the_counters_slot(counter: str) -> None:
    """An item or experiment id may hold braces: the token set still lands in the counter's slot."""
    token = keys.counter_token(counter, 7)
    assert key_slot(token.encode()) == key_slot(counter.encode())
    assert token != keys.counter_token(counter, 8)


def test_the_triggers_shared_keys_share_one_slot_on_a_cluster_and_keep_their_names_on_one_redis() -> None:
    one, many = trigger_keys.names(False), trigger_keys.names(True)
    assert (one.once, one.deliveries, one.dead, one.stats("t"), one.changes) == (
        "tg:once", "tg:deliveries", "tg:dead", "tg:n:t", "tg:{tg}:i")
    shared = [many.once, many.deliveries, many.held_out, many.dead, many.stats("t"), many.people("t", "sent"),
              many.converted("t", "sent"), many.revenue("t", "control"), many.committed, trigger_keys.OCCURRENCES,
              trigger_keys.data(trigger_keys.OUTBOX), trigger_keys.TOPIC]
    assert {key_slot(k.encode()) for k in shared} == {key_slot(b"{tg}")}
    assert key_slot(many.changes.encode()) == key_slot(keys.catalogue_keys(True).items.encode())
