"""The request path's reads on a real three-primary Redis Cluster (tests/redis_cluster.py): one MGET
per slot, values in the caller's order, and a primary killed with its replica promoted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from engine.store import cluster as on_cluster, keys
from engine.store.cluster_reads import ClusterReader
from engine.store.connect import connect_cluster
from tests.redis_cluster import Cluster


def test_keys_of_several_slots_come_back_in_order(cluster: Cluster) -> None:
    async def scenario() -> None:
        redis = await connect_cluster(cluster.url, timeout_s=5).initialize()
        reader = ClusterReader(redis)
        wanted = [keys.visitor("va"), keys.customer("ca"), keys.exposure("va"), keys.visitor("vb"),
                  keys.for_you("va"), keys.customer("cb"), "tr:1"]
        assert len({redis.keyslot(k) for k in wanted}) >= 4
        assert len({redis.get_node_from_key(k).name for k in wanted}) == 3  # every primary
        for key in wanted[:-2]:
            await redis.set(key, key.encode())
        deadline = asyncio.get_running_loop().time() + 5
        assert await reader.mget(wanted, deadline) == [k.encode() for k in wanted[:-2]] + [None, None]
        one_slot = [keys.visitor("va"), keys.exposure("va"), keys.pages("va")]
        assert await reader.mget(one_slot) == [keys.visitor("va").encode(), keys.exposure("va").encode(), None]
        assert await reader.mget([]) == []
        await reader.aclose()
        await redis.aclose()

    asyncio.run(scenario())


def test_reads_follow_a_promoted_replica(cluster: Cluster) -> None:
    """Reads of the dead primary's slots fail (the request degrades) until the replica is promoted;
    then the reader has re-read the slot map and finds what the primary had acknowledged."""
    key = keys.visitor("failover")

    async def write() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.set(key, b"profile")
        await redis.execute_command("WAIT", 1, 2000, target_nodes=redis.get_node_from_key(key))
        await redis.aclose()

    async def read_through_failover() -> tuple[int, bytes | None]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        reader = ClusterReader(redis)
        assert await reader.mget([key]) == [b"profile"]
        primary = cluster.primary_of(key)
        cluster.kill(primary)
        failed, value = 0, None
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            try:
                [value] = await reader.mget([key], asyncio.get_running_loop().time() + 1)
                break
            except RedisError:
                failed += 1
                await asyncio.sleep(0.2)
        await reader.aclose()
        await redis.aclose()
        cluster.restart(primary)
        return failed, value

    asyncio.run(write())
    failed, value = asyncio.run(read_through_failover())
    assert failed > 0  # the dead primary's reads failed first
    assert value == b"profile"
    cluster.wait_healthy()


def test_an_unreachable_cluster_is_a_redis_error() -> None:
    """What ``Recommender.read`` turns into a degraded answer, not a failed request."""
    async def scenario() -> None:
        reader = ClusterReader(connect_cluster("redis://127.0.0.1:1/0", timeout_s=0.5))
        with pytest.raises(RedisError):
            await reader.mget([keys.visitor("x")], asyncio.get_running_loop().time() + 2)
        await reader.aclose()

    asyncio.run(scenario())


def test_dbsize_counts_the_keys_of_every_primary(cluster: Cluster) -> None:
    """Segment counts scale their sample by it: one node's count would be a third of the keys."""
    async def scenario() -> None:
        redis = await connect_cluster(cluster.url, timeout_s=5).initialize()
        await redis.flushall()
        names = [keys.visitor(f"n{i}") for i in range(60)]
        assert len({redis.get_node_from_key(k).name for k in names}) == 3
        for name in names:
            await redis.set(name, b"1")
        assert await on_cluster.dbsize(redis) == 60
        await redis.aclose()

    asyncio.run(scenario())
