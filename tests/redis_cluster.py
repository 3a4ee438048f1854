"""The tests' real Redis Cluster (three primaries, three replicas on 127.0.0.1): the starter lives
in engine.store.cluster_server, which `vitrine bench --cluster` uses too."""

from __future__ import annotations

from engine.store.cluster_server import Cluster, start_cluster

__all__ = ["Cluster", "start_cluster"]
