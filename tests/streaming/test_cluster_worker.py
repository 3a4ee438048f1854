"""A real ``vitrine worker`` on a real three-primary Redis Cluster (tests/redis_cluster.py) with the
test broker: events go in through the API in Kafka mode, a primary is SIGKILLed mid-stream and its
replica promoted, and every visitor ends with exactly its events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.profiles.codec import decode_dict
from engine.settings import Settings
from engine.store import keys
from engine.store.connect import connect_cluster
from streaming.devstack import TansuBroker
from tests.conftest import ADMIN, make_settings
from tests.redis_cluster import Cluster
from tests.streaming.conftest import FAST_GROUP, wait_until


@pytest.fixture
def kafka_settings(cluster: Cluster, data_dir: Path, broker: TansuBroker) -> Settings:
    """The streaming fixtures' settings on the cluster: ``start_worker`` starts workers with these."""
    async def empty() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        await redis.aclose()

    asyncio.run(empty())
    return make_settings(data_dir, cluster.url, kafka_brokers=broker.address, redis_cluster=True, **FAST_GROUP)


def carts(cluster: Cluster, visitors: list[str]) -> dict[str, dict]:
    """Each visitor's stored cart, read straight from the cluster (whichever node is alive)."""
    async def read() -> dict[str, dict]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        try:
            raw = await redis.mget_nonatomic([keys.visitor(v) for v in visitors])
        finally:
            await redis.aclose()
        return {v: (decode_dict(r) or {}).get("ct", {}) for v, r in zip(visitors, raw)}

    return asyncio.run(read())


def test_a_primary_killed_mid_stream_loses_and_doubles_nothing(kafka_settings: Settings, cluster: Cluster,
                                                              start_worker) -> None:
    """Carts are sums: a lost event leaves one short, a doubled one one over. Every batch is also
    produced twice (a client's retry); a login in every round writes a customer in another slot."""
    visitors = [f"cw{n}" for n in range(8)]
    assert len({cluster.primary_of(keys.visitor(v)).port for v in visitors}) == 3
    victim = cluster.primary_of(keys.visitor(visitors[0]))
    worker = start_worker()
    rounds = 24
    with TestClient(create_app(kafka_settings)) as api:
        for r in range(rounds):
            if r == 8:  # the worker is applying: kill the primary under it
                wait_until(lambda: carts(cluster, visitors)[visitors[0]], what="the worker to apply some events")
                cluster.kill(victim)
            batch = [{"event_id": f"{v}-{r}", "type": "add_to_cart", "visitor_id": v, "item_id": "85123A"}
                     for v in visitors]
            batch.append({"event_id": f"login-{r}", "type": "login", "visitor_id": visitors[r % 8],
                          "customer_id": "cust-cw"})
            for _ in range(2):
                answer = api.post("/v1/events", json={"events": batch}, headers=ADMIN)
                assert answer.status_code == 200, answer.text
        cluster.wait_healthy()
        # Writes wait for a replica (VITRINE_REDIS_CLUSTER_REPLICAS=1): the promoted primary has
        # none until the killed node comes back as its replica; the worker retries meanwhile.
        cluster.restart(victim)
        cluster.wait_healthy()
        wait_until(lambda: carts(cluster, visitors) == {v: {"85123A": rounds} for v in visitors},
                   timeout_s=120, what="the worker to apply every event")
        wait_until(lambda: recovered(worker.output()), timeout_s=120, what="the worker to recover")
        assert carts(cluster, visitors) == {v: {"85123A": rounds} for v in visitors}  # and not once more
        customer = api.get("/v1/customers/cust-cw", headers=ADMIN)
        assert customer.status_code == 200, customer.text  # written in its own slot by the logins


def recovered(output: str) -> bool:
    """The worker hit the outage (its applies failed and were retried) and its last retry succeeded."""
    said = [line for line in output.splitlines() if "stream-apply" in line]
    return bool(said) and "failed" in said[0] and "recovered" in said[-1]
