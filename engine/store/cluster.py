"""What runs on a Redis Cluster (``VITRINE_REDIS_CLUSTER``): every feature, and the helpers that
keep a few multi-key calls right there.

Each part below keeps a script, a transaction or an MGET within one hash slot; redis-py checks a
command's keys for one slot before sending it, so a command that still spanned slots would be
refused before anything is written (a bug: api/app.py answers it 500 and logs it).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript

CLUSTER_SAFE = (
    "applying events (engine.ingest.cluster.ClusterApplier)",
    "request reads: recommendations, blocks, page, rerank (engine.store.cluster_reads)",
    "catalogue reads and writes (engine.catalog: its keys share the tag {items})",
    "declared preferences (engine.profiles.preferences: the record and its index entries written apart)",
    "export and erasure of a person, the customer view (engine.customers: one MGET or DEL per slot)",
    "customer merges, by hand and at login (engine.customers.merge_apart: single-slot steps a retry completes)",
    "vitrine replay and segment counts (redis-py's SCAN visits every primary; DEL and MGET go per slot)",
    "paging, stored for-you lists, trending, the event log's checkpoint and retention",
    "triggers and the viewers index they read (engine.triggers: shared keys under {tg}; a person's keys "
    "written in steps of their own)",
)


def announcement() -> str:
    """What a process started in cluster mode logs, so that an operator sees how each part copes."""
    return f"VITRINE_REDIS_CLUSTER=true: every feature runs on a Redis Cluster: {'; '.join(CLUSTER_SAFE)}."


async def mget(redis: Redis | RedisCluster, names: list[str]) -> list[bytes | None]:
    """MGET of several people's keys (admin views, export, erasure): one command on one Redis, one
    per slot on a cluster (redis-py's ``mget_nonatomic``). Such a read was never a snapshot of
    several people anyway: each person is written on their own."""
    if isinstance(redis, RedisCluster):
        return await redis.mget_nonatomic(names)  # type: ignore[no-any-return]
    return await redis.mget(names)  # type: ignore[no-any-return]


async def dbsize(redis: Redis | RedisCluster) -> int:
    """The number of keys: on a cluster the sum over its primaries (redis-py's ``dbsize`` asks one
    node unless told to ask them all; it then adds their answers up)."""
    if isinstance(redis, RedisCluster):
        return int(await redis.dbsize(target_nodes=RedisCluster.PRIMARIES))
    return int(await redis.dbsize())


def transactions(redis: Redis | RedisCluster) -> bool:
    """Whether a MULTI may span slots: not on a cluster. Index clean-ups (removals, idempotent) then
    go as a plain pipeline."""
    return not isinstance(redis, RedisCluster)


def on_cluster(redis: Any) -> bool:
    """Whether ``redis`` (a client) talks to a Redis Cluster."""
    return isinstance(redis, RedisCluster)


async def call(script: AsyncScript, keys: list[str], args: list[Any], client: Any = None) -> Any:
    """Run a registered script, queued on ``client`` when it is a pipeline. On a cluster's
    pipeline the script goes as EVAL: redis-py queues EVALSHA there without loading the script on
    the slot's node first."""
    if isinstance(client, ClusterPipeline):
        return client.eval(script.script, len(keys), *keys, *args)
    return await script(keys=keys, args=args, client=client)
