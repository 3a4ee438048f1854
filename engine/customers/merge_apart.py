"""The single-slot steps of a customer merge on a Redis Cluster, where the customers, their
cookies and their aliases each live in a slot of their own (engine/store/README.md#redis-cluster).

Per customer id merged away (``engine.customers.merge`` runs them in this order):

1. ``seal``, in its slot: read its profile and, in the same script, move it with its identity
   record and recent event fingerprints to its pending-merge record (``cm:{id}``) and make the id
   an alias of the survivor (``ca:{id}``). No event changes the profile after it was read: the
   applier's compare-and-set on ``c:{id}`` fails and it follows the alias.
2. ``absorb``, in the survivor's slot: compare-and-set the combined profile and record ``m:<id>``
   in the survivor's identity record in the same script, so a repeat adds nothing.
3. ``repoint`` and ``relink``: aliases of ids merged into the absorbed one before, then its
   cookies (each a compare-and-set in its own slot). Until then readers follow the aliases.
4. ``clear``: the pending-merge record goes, last.

Before the seal the id is listed among the merges pending (``cmq``), and it leaves that list with
its record. A crash or a failover between two steps leaves the pending record, which the next
attempt (the request retried, the login redelivered or repeated) completes from the step it
reached; when nobody tries again, the sweep does (``engine.customers.merge.sweep``). Each step
ends with ``WAIT`` for the replicas on the connection that wrote, so a promoted replica holds it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from engine.ingest.apply import contention_pause
from engine.profiles.codec import decode_dict, encode
from engine.profiles.shapes import VisitorProfile
from engine.store import keys

_LUA = Path(__file__).parent / "lua"
_SEAL = (_LUA / "seal.lua").read_text()
_ABSORB = (_LUA / "absorb.lua").read_text()
_RELINK = (_LUA / "relink.lua").read_text()
_LIST = "redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])"
# The listed merges begun before ARGV[1], up to ARGV[3] of them, each leased until ARGV[2] (its
# score moves there) so that processes sweeping at once do not all take it.
_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, source in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], source) end
return due
"""


class NotReplicated(RedisError):
    """A step did not reach enough replicas in time; the merge is retried from where it stands."""


@dataclass
class Sealed:
    """A customer id taken out for a merge (its ``cm:{id}`` record): what the survivor absorbs."""
    source: str
    into: str  # the survivor named when it was sealed (follow its alias: it may have been merged since)
    profile: bytes
    history: bytes
    identity: dict[bytes, bytes] = field(default_factory=dict)
    fingerprints: dict[int, bytes] = field(default_factory=dict)  # dedup bucket -> 8-byte fingerprints

    @classmethod
    def parse(cls, source: str, flat: list[bytes]) -> "Sealed":
        fields = dict(zip(flat[::2], flat[1::2]))
        return cls(source, fields[b"into"].decode(), fields[b"p"], fields[b"h"],
                   {k[2:]: v for k, v in fields.items() if k.startswith(b"i:")},
                   {int(k[2:]): v for k, v in fields.items() if k.startswith(b"d:")})

    def merged_before(self) -> list[str]:
        """Ids that had been merged into the sealed one: their aliases must follow it."""
        return [name[2:].decode() for name in self.identity if name.startswith(b"m:")]


async def step(redis: RedisCluster, script: str, keys_: list[str], args: list[Any], *, replicas: int,
               timeout_s: float) -> Any:
    """One script on its slot's primary, then ``WAIT`` on that connection for ``replicas``."""
    await redis.initialize()
    node = redis.get_node_from_key(keys_[0])
    client = Redis(host=node.host, port=node.port, socket_timeout=timeout_s,
                   socket_connect_timeout=min(timeout_s, 2.0))
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.eval(script, len(keys_), *keys_, *args)
            if replicas:
                pipe.execute_command("WAIT", replicas, int(timeout_s * 500))
            replies = await pipe.execute()
    except RedisError:
        await redis.nodes_manager.initialize()  # a failover moved the slot: the retry finds its new primary
        raise
    finally:
        await client.aclose()
    if replicas and replies[-1] < replicas:
        raise NotReplicated(f"{node.name} reached {replies[-1]} of {replicas} replicas")
    return replies[0]


async def pending(redis: RedisCluster, customer_id: str) -> Sealed | None:
    """The merge of ``customer_id`` started and not finished, if any."""
    flat = await redis.hgetall(keys.merging(customer_id))
    if not flat:
        return None
    return Sealed.parse(customer_id, [x for pair in flat.items() for x in pair])


async def seal(redis: RedisCluster, source: str, into: str, history: bytes, bucket: int, *, replicas: int,
               timeout_s: float) -> Sealed | str | None:
    """Step 1. The sealed record (now or from an earlier attempt), the customer it was merged into
    when that merge is complete, or None when it has no profile."""
    await step(redis, _LIST, [keys.merges_pending()], [time.time(), source], replicas=replicas, timeout_s=timeout_s)
    reply = await step(redis, _SEAL, [keys.customer(source), keys.identity(source), keys.alias(source),
                                      keys.merging(source), keys.customer_dedup(source, bucket),
                                      keys.customer_dedup(source, bucket - 1)],
                       [into, history, bucket, bucket - 1], replicas=replicas, timeout_s=timeout_s)
    if reply[0] == 2:
        return Sealed.parse(source, reply[1:])
    await redis.zrem(keys.merges_pending(), source)  # nothing pending
    return reply[1].decode() if reply[0] == 1 else None


async def absorb(redis: RedisCluster, sealed: Sealed, survivor: str, old: bytes, new: bytes, *, ttl_s: int,
                 window_s: float, replicas: int, timeout_s: float) -> int:
    """Step 2: 2 absorbed now, 1 before, 0 the survivor changed (re-read), -1 it was merged away."""
    buckets = sorted(sealed.fingerprints)
    args: list[Any] = [sealed.source, old, new, ttl_s, sealed.history, len(sealed.identity)]
    for name, value in sealed.identity.items():
        args += [name, value]
    for b in buckets:
        args += [sealed.fingerprints[b], int((b + 2) * window_s)]
    return int(await step(redis, _ABSORB, [keys.customer(survivor), keys.identity(survivor), keys.alias(survivor),
                                           *(keys.customer_dedup(survivor, b) for b in buckets)], args,
                          replicas=replicas, timeout_s=timeout_s))


async def repoint(redis: RedisCluster, ids: list[str], survivor: str) -> None:
    """Step 3a: the absorbed id and those merged into it before now alias the survivor directly."""
    for customer_id in ids:
        await redis.set(keys.alias(customer_id), survivor)


async def relink(redis: RedisCluster, cookies: list[str], source: str, survivor: str, *, ttl_s: int,
                 replicas: int, timeout_s: float, rounds: int) -> bool:
    """Step 3b: each cookie still linked to ``source`` is linked to ``survivor``; False when events
    kept changing one (the next attempt relinks it; readers follow the alias meanwhile)."""
    for visitor_id in cookies:
        for lost in range(rounds):
            if lost:
                await asyncio.sleep(contention_pause(lost))
            raw = await redis.get(keys.visitor(visitor_id))
            data = decode_dict(raw)
            if VisitorProfile.customer_of(data) != source:
                break  # gone, relinked already, or moved to another customer since
            visitor = VisitorProfile.from_stored(data)
            visitor.customer_id = survivor
            if await step(redis, _RELINK, [keys.visitor(visitor_id)], [raw, encode(visitor), ttl_s],
                          replicas=replicas, timeout_s=timeout_s):
                break
        else:
            return False
    return True


async def clear(redis: RedisCluster, source: str) -> None:
    """Step 4: the merge of ``source`` is complete."""
    await redis.delete(keys.merging(source))
    await redis.zrem(keys.merges_pending(), source)


async def due(redis: RedisCluster, begun_before: float, lease_until: float, limit: int = 100) -> list[str]:
    """Up to ``limit`` ids whose merge began before ``begun_before`` and is still listed, each now
    leased to the caller until ``lease_until``."""
    return [source.decode() for source in await redis.eval(_DUE, 1, keys.merges_pending(), begun_before,
                                                            lease_until, limit)]
