"""Apply events on a Redis Cluster: every script touches one slot, and a crash between two of
them loses or doubles nothing.

On one Redis a visitor's events reach their profile, their customer's profile and the shared
counters (trending, experiment counters, watchers) in one script. On a cluster those live in
different slots, so each round writes in two steps, reusing ``lua/apply.lua`` per slot:

1. Per customer a plan changed: compare-and-set ``c:{id}`` and record the fingerprints of the
   events that changed it in ``dc:{id}:<bucket>``. Per shared counter and event: the increments,
   unless the event's fingerprint is in the counter's token set ``tk:...`` (same slot).
2. Per visitor whose customer writes all succeeded: compare-and-set their profile and exposure and
   record the fingerprints in their dedup bucket. This is the commit.

A crash, a failed compare or a failover after step 1 leaves the events unrecorded for the
visitor, so they are applied again; the customer and the counters find the fingerprints and
take them once (``_customer_has``), the visitor takes them now. A customer id merged away
(engine.customers.merge_apart) lends its fingerprints to its survivor: the events its profile held
reach the survivor with it. Each step ends with ``WAIT`` on
every primary written, on the connection that wrote, so an event counts as applied only once
a replica holds it: a primary killed afterwards loses nothing its promoted replica lacks.

Reads are one script per visitor and per customer, each in its own slot, sent to every primary
at once (one round trip per node, in parallel).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import AskError, MovedError, RedisError

from engine.ingest.apply import _READ_SCRIPT, _SCRIPT, EventApplier, _Plan
from engine.store import keys
from engine.store.latency import LatencyHistogram

Call = tuple[list[str], list[Any]]  # the keys (one slot) and arguments of one script call


class ClusterMoved(RedisError):
    """A slot answered from elsewhere (``MOVED``/``ASK``: a failover or a resharding): the slot
    map is refreshed and the round is retried later, like a connection error."""


class NotReplicated(RedisError):
    """A primary did not get its writes to enough replicas in time; retrying is idempotent."""


class ClusterApplier(EventApplier):
    """``EventApplier`` for a ``RedisCluster`` client, with the login merges
    (``engine.customers.merge_apart``) and the trigger hook (``engine.triggers.hook``), both
    written slot by slot."""

    def __init__(self, redis: RedisCluster, *args: Any, replicas: int = 1, timeout_s: float = 5.0,
                 **kwargs: Any) -> None:
        super().__init__(redis, *args, **kwargs)
        self._cluster = redis
        self._replicas = replicas
        self._timeout_s = timeout_s
        self._nodes: dict[str, Redis] = {}
        # Set by each round's read, used by the fold that follows it with no await in between, so
        # concurrent ``apply`` calls on one applier never see each other's.
        self._customer_seen: dict[str, set[bytes]] = {}

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()

    def _customer_has(self, customer_id: str, fp: bytes) -> bool:
        return fp in self._customer_seen.get(customer_id, ())

    async def _read(self, visitor_ids: list[str], fingerprints: dict[str, list[bytes]],
                    customer_ids: list[str], bucket: int) -> tuple[list, list, list, list]:
        every = [fp for vid in visitor_ids for fp in fingerprints[vid]]
        calls: list[Call] = [([keys.visitor(v), keys.dedup(v, bucket), keys.dedup(v, bucket - 1), keys.exposure(v),
                               keys.erasure(keys.visitor(v))], [1, b"".join(fingerprints[v])]) for v in visitor_ids]
        calls += [([keys.customer(c), keys.customer_dedup(c, bucket), keys.customer_dedup(c, bucket - 1),
                    keys.alias(c), keys.erasure(keys.customer(c))], [1, b"".join(every)]) for c in customer_ids]
        replies = await self._timed(self._read_latency, _READ_SCRIPT, calls, wait=False)
        visitor_replies = [value for reply in replies[:len(visitor_ids)] for value in reply]
        self._customer_seen = {}
        profiles, aliases, erasures = [], [], []
        for cid, (profile, seen, alias, erased_at) in zip(customer_ids, replies[len(visitor_ids):]):
            profiles.append(profile)
            aliases.append(alias)
            erasures.append(erased_at)
            self._customer_seen[cid] = {fp for fp, flag in zip(every, seen or b"") if flag == 49}  # b"1"
        for cid, alias in zip(customer_ids, aliases):
            if alias:  # merged away: the events its profile held went, or are going, to the survivor with it
                self._customer_seen.setdefault(alias.decode(), set()).update(self._customer_seen[cid])
        return visitor_replies, profiles, aliases, erasures

    async def _write(self, plans: list[_Plan], bucket: int) -> list[bool]:
        expire_at = int((bucket + 2) * self._window)
        writing = [plan for plan in plans if plan.done]
        first: list[Call] = []
        owner: list[int] = []  # the plan of each customer call
        for i, plan in enumerate(writing):
            for key, cas in plan.cas.items():
                if keys.is_customer(key):
                    cid = keys.customer_of(key)
                    first.append(([key, keys.customer_dedup(cid, bucket), keys.customer_dedup(cid, bucket - 1)],
                                  [expire_at, 1, 1, cas.old, cas.new or b"", cas.ttl,
                                   b"".join(plan.touched.get(cid, [])), 0]))
                    owner.append(i)
        counted: dict[tuple[str, bytes], list[tuple[str, float, int]]] = defaultdict(list)
        for plan in writing:
            for fp, key, member, incr, counter_expire in plan.counts:
                counted[(key, fp)].append((member, incr, counter_expire))
        for (key, fp), members in counted.items():  # one call per event and counter: its token decides
            args: list[Any] = [expire_at, 1, 0, fp, len(members)]
            for member, incr, counter_expire in members:
                args += [member, incr, counter_expire]
            first.append(([keys.counter_token(key, bucket), keys.counter_token(key, bucket - 1)]
                          + [key] * len(members), args))
        replies = await self._timed(self._write_latency, _SCRIPT, first, wait=True)
        failed = {owner[n] for n, reply in enumerate(replies[:len(owner)]) if not reply[0]}
        second: list[Call] = []
        committing = [i for i in range(len(writing)) if i not in failed]
        for i in committing:
            plan = writing[i]
            own = [key for key in plan.cas if not keys.is_customer(key)]
            args = [expire_at, 1, len(own)]
            for key in own:
                cas = plan.cas[key]
                args += [cas.old, cas.new or b"", cas.ttl]
            second.append((own + [keys.dedup(plan.visitor_id, bucket), keys.dedup(plan.visitor_id, bucket - 1)],
                           args + [b"".join(plan.fps), 0]))
        second_replies = await self._timed(self._write_latency, _SCRIPT, second, wait=True)
        committed = {i: bool(reply[0]) for i, reply in zip(committing, second_replies)}
        ok = iter([committed.get(i, False) for i in range(len(writing))])
        return [next(ok) if plan.done else True for plan in plans]

    async def _timed(self, latency: LatencyHistogram, script: str, calls: list[Call], *, wait: bool) -> list[Any]:
        """``_run``, its time to the last primary's reply observed as one Redis's pipeline is."""
        if not calls:
            return []
        started = time.perf_counter()
        replies = await self._run(script, calls, wait=wait)
        latency.observe(time.perf_counter() - started)
        return replies

    async def _run(self, script: str, calls: list[Call], *, wait: bool) -> list[Any]:
        """Each call on the primary of its slot: one pipeline per primary, all at once, ending with
        ``WAIT`` when ``wait`` (it waits for what its own connection wrote)."""
        if not calls:
            return []
        try:
            await self._cluster.initialize()
            groups: dict[str, list[int]] = defaultdict(list)
            nodes: dict[str, ClusterNode] = {}
            for n, (keys_, _) in enumerate(calls):
                node = self._cluster.get_node_from_key(keys_[0])
                groups[node.name].append(n)
                nodes[node.name] = node
            results: list[Any] = [None] * len(calls)
            await asyncio.gather(*(self._on_node(nodes[name], script, calls, group, results, wait)
                                   for name, group in groups.items()))
            return results
        except (MovedError, AskError) as exc:
            await self._refresh()
            raise ClusterMoved(str(exc)) from exc
        except (RedisError, OSError):
            await self._refresh()
            raise

    async def _on_node(self, node: ClusterNode, script: str, calls: list[Call], group: list[int],
                       results: list[Any], wait: bool) -> None:
        client = self._nodes.get(node.name)
        if client is None:
            client = self._nodes[node.name] = Redis(host=node.host, port=node.port, socket_timeout=self._timeout_s,
                                                    socket_connect_timeout=min(self._timeout_s, 2.0))
        async with client.pipeline(transaction=False) as pipe:
            for n in group:
                keys_, args = calls[n]
                pipe.eval(script, len(keys_), *keys_, *args)
            if wait and self._replicas:
                pipe.execute_command("WAIT", self._replicas, int(self._timeout_s * 500))  # within the socket timeout
            replies = await pipe.execute()
        if wait and self._replicas and replies[-1] < self._replicas:
            raise NotReplicated(f"{node.name} reached {replies[-1]} of {self._replicas} replicas")
        for n, reply in zip(group, replies):
            results[n] = reply

    async def _refresh(self) -> None:
        """Re-read the slot map (a failover moved a primary); failing that, the next round tries."""
        with contextlib.suppress(RedisError, OSError):
            await self._cluster.nodes_manager.initialize()
