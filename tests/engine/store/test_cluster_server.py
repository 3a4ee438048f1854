"""The local Redis Cluster that benchmarks and tests start (engine.store.cluster_server)."""

from __future__ import annotations

from pathlib import Path

import redis

from engine.store.cluster_server import SLOTS, Cluster, node_client, start_cluster


def test_three_primaries_each_with_a_replica_serve_every_slot(cluster: Cluster) -> None:
    with node_client(cluster.servers[0]) as client:
        ranges = client.cluster("slots")
        info = client.cluster("info")
    assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 6
    assert sum(end - start + 1 for start, end, *_ in ranges) == SLOTS
    primaries = {primary[1] for _, _, primary, *_ in ranges}
    assert len(primaries) == 3
    replicas = []
    for server in cluster.servers:
        if server.port not in primaries:
            with node_client(server) as client:
                replicas.append(client.info("replication"))
    assert [r["role"] for r in replicas] == ["slave"] * 3 and all(r["master_link_status"] == "up" for r in replicas)
    assert {r["master_port"] for r in replicas} == primaries  # one replica each
    with redis.RedisCluster.from_url(cluster.url) as client:  # a key on any slot is written and read
        for key in ("a", "b", "c", "{items}"):
            client.set(key, key)
            assert client.get(key) == key.encode()


def test_stop_ends_every_node(tmp_path: Path) -> None:
    started = start_cluster(tmp_path)
    started.stop()
    assert all(server.process.poll() is not None for server in started.servers)
