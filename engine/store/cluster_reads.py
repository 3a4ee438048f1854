"""The request path's reads on a Redis Cluster: the same ``mget`` as ``engine.store.reads``, one
MGET per hash slot, sent at once to the primaries holding them.

A request reads one person's keys: a visitor's (``v:``, ``x:``, ``f:``, ``pv:``) share their id's
slot, so a visitor's read is one MGET, as on one Redis. A request that names a customer reads the
customer's slot too: two MGETs, sent together (to two primaries, or pipelined on one), so still one
round trip of wall time. Shared keys (catalogue, trending, rules) are not read per request: they
are cached in process as on one Redis (``engine.catalog``, ``engine.ranking.trending``).

Each primary gets its own ``PipelinedReader`` (deadlines, reconnects and the watchdog as on one
Redis); the MGETs of one request are all sent before any is awaited, with no task each. A
``MOVED``/``ASK`` answer or a lost node fails the read (the request degrades, as when one Redis
fails) and re-reads the slot map in the background, so the next requests go to the promoted
replica.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisClusterException, RedisError

from engine.store.latency import LatencyHistogram
from engine.store.reads import PipelinedReader


# Errors saying the slot map changed (a failover, a resharding, a node that lost its slots).
_REDIRECTED = ("MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN")


class ClusterReader:
    """``mget`` over keys of any slots (an ``engine.profiles.store.KeyReader``), values in order."""

    def __init__(self, cluster: RedisCluster, latency: LatencyHistogram | None = None) -> None:
        self._cluster = cluster
        self._latency = latency
        self._readers: dict[str, PipelinedReader] = {}
        self._ready = False
        self._refresh: asyncio.Task[None] | None = None

    async def mget(self, keys: list[str], deadline: float | None = None) -> list[bytes | None]:
        if not keys:
            return []
        if not self._ready:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._cluster.initialize()
            except RedisClusterException as exc:  # no node reachable: a Redis error to the request path
                raise ConnectionError(f"no cluster node answers: {exc}") from exc
            self._ready = True
        slots = [key_slot(key.encode()) for key in keys]
        first = slots[0]
        if all(slot == first for slot in slots):
            reader = self._reader(first)
            try:
                return await reader.mget(keys, deadline)
            except RedisError as exc:
                self._failed(exc)
                raise
        groups: dict[int, list[int]] = {}
        for n, slot in enumerate(slots):
            groups.setdefault(slot, []).append(n)
        readers = [self._reader(slot) for slot in groups]  # before anything is sent
        pending = [reader.sent(group, deadline) or reader.mget(group, deadline)
                   for reader, group in zip(readers, ([keys[n] for n in positions] for positions in groups.values()))]
        replies = await asyncio.gather(*pending, return_exceptions=True)  # every reply taken, failed or not
        values: list[bytes | None] = [None] * len(keys)
        for positions, reply in zip(groups.values(), replies):
            if isinstance(reply, BaseException):
                if isinstance(reply, RedisError):
                    self._failed(reply)
                raise reply
            for n, value in zip(positions, reply):
                values[n] = value
        return values

    def _reader(self, slot: int) -> PipelinedReader:
        """The reader of the primary serving ``slot``."""
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(slot)
        except RedisClusterException as exc:  # no primary known for the slot (a failover under way)
            self._refresh_map()
            raise ConnectionError(f"no node serves slot {slot}") from exc
        reader = self._readers.get(node.name)
        if reader is None:
            reader = self._readers[node.name] = PipelinedReader(_client_of(node), self._latency)
        return reader

    def _failed(self, exc: RedisError) -> None:
        """A lost node, or an answer saying the slot moved: re-read the slot map. (Not a read past its
        caller's deadline: a slow Redis would have every request ask for the map.)"""
        if isinstance(exc, ConnectionError) or str(exc).startswith(_REDIRECTED):
            self._refresh_map()

    def _refresh_map(self) -> None:
        """Re-read the slot map once in the background; requests meanwhile degrade."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._reinitialize())

    async def _reinitialize(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await self._cluster.nodes_manager.initialize()

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
        for reader in self._readers.values():
            await reader.aclose()
        self._readers.clear()


def _client_of(node: ClusterNode) -> Redis:
    """A never-connected client holding the node's address, credentials, TLS and timeouts, which
    ``PipelinedReader`` reads to open its own connection."""
    return Redis(connection_pool=ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs))
