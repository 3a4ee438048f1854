"""What runs on a Redis Cluster (``VITRINE_REDIS_CLUSTER``) and what does not yet.

A part not listed as safe would send one script or transaction over keys of several slots. The
engine starts on a cluster and says at startup which features are off; a request to one of them
answers ``501`` naming it (api/app.py) before anything is written: redis-py checks a script's, a
transaction's or an MGET's keys for one slot before sending it (engine/store/README.md#redis-cluster).
"""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

CLUSTER_SAFE = (
    "applying events (engine.ingest.cluster.ClusterApplier)",
    "request reads: recommendations, blocks, page, rerank (engine.store.cluster_reads)",
    "catalogue reads and writes (engine.catalog: its keys share the tag {items})",
    "declared preferences (engine.profiles.preferences: the record and its index entries written apart)",
    "export and erasure of a person, the customer view (engine.customers: one MGET or DEL per slot)",
    "customer merges, by hand and at login (engine.customers.merge_apart: single-slot steps a retry completes)",
    "vitrine replay and segment counts (redis-py's SCAN visits every primary; DEL and MGET go per slot)",
    "paging, stored for-you lists, trending, the event log's checkpoint and retention",
)

NOT_CLUSTER_SAFE = (
    "triggers, with the viewers index they keep (engine.triggers: the queue, once-index and a person's keys "
    "in one script)",
)


class ClusterUnsupported(RuntimeError):
    """Cluster mode asked of a part that would send cross-slot commands."""


def limits() -> str:
    """What a process started in cluster mode logs: what is off."""
    return ("VITRINE_REDIS_CLUSTER=true: these features are off on a Redis Cluster (their requests answer 501): "
            f"{'; '.join(NOT_CLUSTER_SAFE)}. Cluster-safe: {'; '.join(CLUSTER_SAFE)}.")


def refuse(what: str) -> ClusterUnsupported:
    return ClusterUnsupported(f"{what} cannot run on a Redis Cluster yet (VITRINE_REDIS_CLUSTER=true)")


async def mget(redis: Redis | RedisCluster, names: list[str]) -> list[bytes | None]:
    """MGET of several people's keys (admin views, export, erasure): one command on one Redis, one
    per slot on a cluster (redis-py's ``mget_nonatomic``). Such a read was never a snapshot of
    several people anyway: each person is written on their own."""
    if isinstance(redis, RedisCluster):
        return await redis.mget_nonatomic(names)  # type: ignore[no-any-return]
    return await redis.mget(names)  # type: ignore[no-any-return]


def transactions(redis: Redis | RedisCluster) -> bool:
    """Whether a MULTI may span slots: not on a cluster. Index clean-ups (removals, idempotent) then
    go as a plain pipeline."""
    return not isinstance(redis, RedisCluster)
