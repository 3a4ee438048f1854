"""What runs on a Redis Cluster (``VITRINE_REDIS_CLUSTER``) and what does not yet.

A part not listed as safe would send one script or transaction over keys of several slots, which a
cluster refuses with ``CROSSSLOT`` on some requests and not others; so the engine refuses to start
in cluster mode instead of half-working (engine/store/README.md#redis-cluster).
"""

from __future__ import annotations

CLUSTER_SAFE = ("applying events (engine.ingest.cluster.ClusterApplier)",)

NOT_CLUSTER_SAFE = (
    "request reads (engine.store.reads: one pipelined connection to one server)",
    "catalogue writes (engine.catalog: WATCH/MULTI over items, items:v, items:g)",
    "login merges (engine.customers.merge, logins: one script over several customers' keys)",
    "triggers (engine.triggers: the queue, once-index and a person's keys in one script)",
    "preferences, watchers and viewers (engine.profiles: a profile and w:/wb: keys in one MULTI)",
    "replay, retention and erasure (engine.ingest: SCAN and DEL on one server)",
)


class ClusterUnsupported(RuntimeError):
    """Cluster mode asked of a part that would send cross-slot commands."""


def refuse(what: str) -> ClusterUnsupported:
    return ClusterUnsupported(
        f"VITRINE_REDIS_CLUSTER=true: {what} cannot run on a Redis Cluster yet. Cluster-safe: "
        f"{'; '.join(CLUSTER_SAFE)}. Not yet: {'; '.join(NOT_CLUSTER_SAFE)}.")
