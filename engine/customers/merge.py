"""One person, one record: merging customer ids known to be one person, by hand
(``POST /v1/customers/merge``) or when two customer ids log in with the same hashed email.

The survivor's profile absorbs the others' (``combine``), their cookies are relinked to it, and
each merged-away id becomes an alias (``ca:{id}`` -> survivor) that the applier, the request path
and the admin reads follow, so later events and reads for it land on the survivor. The merged ids
and when and by whom they were merged are kept in the survivor's identity record (``ci:{id}``).
All of it is one Lua compare-and-set (``lua/merge.lua``) against the values read, retried when an
event changed one of them meanwhile, as the applier does: nothing is counted twice and no event
is lost. Merging an id already merged into the survivor is a no-op, so merging again, or the other
way round, changes nothing. On a Redis Cluster, where those keys sit in different slots, the same
merge is a sequence of single-slot steps that a crash may interrupt anywhere and the next attempt
completes (``merge_apart``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from redis.asyncio import Redis, RedisCluster

from engine.customers import audit, merge_apart
from engine.customers.combine import combine
from engine.events import erased
from engine.events.erased import digest
from engine.ingest.apply import ApplyContention, contention_pause
from engine.profiles import preferences
from engine.profiles.codec import decode_dict, encode
from engine.profiles.preferences import Declared, Owner
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.settings import Settings
from engine.store import cluster, keys

log = logging.getLogger(__name__)
_SCRIPT = (Path(__file__).parent / "lua" / "merge.lua").read_text()
MAX_ROUNDS = 16
EMAIL_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MergeRefused(ValueError):
    """A merge that cannot be done as asked: which field, and the HTTP status it deserves."""

    def __init__(self, status: int, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.status = status
        self.field = field_name
        self.message = message


class MergeContention(ApplyContention):
    """Events kept changing the same profiles: retry later (transient, as for the applier)."""


@dataclass(frozen=True)
class Apart:
    """What a merge on a Redis Cluster needs beyond what one Redis does: the applier's dedup window
    (the absorbed events' fingerprints move with the profile), the replicas each step waits for,
    and what to do once a survivor absorbed an id before its pending record goes (declared
    preferences, which are written by PUTs, not events)."""
    dedup_window_s: float = 86400.0
    replicas: int = 1
    timeout_s: float = 5.0
    absorbed: Callable[[str, str], Awaitable[None]] | None = None  # (survivor, merged id)


@dataclass
class Merged:
    into: str  # the survivor (``into`` itself, or the id it was merged into before)
    merged: list[str] = field(default_factory=list)  # merged by this call (an id merged elsewhere before: its record)
    already: list[str] = field(default_factory=list)  # merged into the survivor before: nothing done


async def root(redis: Redis, customer_id: str) -> str:
    """The customer id that ``customer_id`` stands for now (itself unless merged away)."""
    target = await redis.get(keys.alias(customer_id))
    return target.decode() if target else customer_id


async def merged_ids(redis: Redis, customer_id: str) -> dict[str, dict[str, object]]:
    """The ids merged into ``customer_id``, with when, by whom, and whether automatically."""
    record = await redis.hgetall(keys.identity(customer_id))
    return {f.decode()[2:]: orjson.loads(v) for f, v in record.items() if f.startswith(b"m:")}


async def merge(redis: Redis, into: str, sources: Sequence[str], *, by: str, auto: bool, now: float,
                customer_ttl_s: int, visitor_ttl_s: int, half_life_s: float,
                is_erased: Callable[[str], bool] = lambda customer_id: False, apart: Apart | None = None) -> Merged:
    """Merge ``sources`` into ``into``; raises ``MergeRefused`` naming the field (``into``,
    ``from[i]``) for an unknown or erased id, or ``into`` itself."""
    for i, source in enumerate(sources):
        if source == into:
            raise MergeRefused(422, f"from[{i}]", "is the same id as `into`")
    if isinstance(redis, RedisCluster):
        return await _merge_apart(redis, into, sources, by=by, auto=auto, now=now, customer_ttl_s=customer_ttl_s,
                                  visitor_ttl_s=visitor_ttl_s, half_life_s=half_life_s, is_erased=is_erased,
                                  apart=apart or Apart())
    script = redis.register_script(_SCRIPT)
    for lost in range(MAX_ROUNDS):
        if lost:
            await asyncio.sleep(contention_pause(lost))
        ids = [into, *sources]
        aliases = await redis.mget([keys.alias(c) for c in ids])
        roots = [a.decode() if a else c for c, a in zip(ids, aliases)]
        raws = await redis.mget([keys.customer(r) for r in roots])
        _refuse_missing(ids, raws, is_erased)
        survivor_id, survivor_raw = roots[0], raws[0]
        result = Merged(survivor_id)
        todo: dict[str, bytes] = {}
        for source, source_root, raw in zip(sources, roots[1:], raws[1:]):
            if source_root == survivor_id:
                result.already.append(source)
            elif source_root not in todo:
                todo[source_root] = raw
        if not todo:
            return result
        profile = CustomerProfile.decode(survivor_raw)
        for raw in todo.values():
            profile = combine(profile, CustomerProfile.decode(raw), half_life_s)
        cookies = list(dict.fromkeys(v for raw in todo.values() for v in CustomerProfile.decode(raw).visitors))
        cookie_raws = await redis.mget([keys.visitor(v) for v in cookies]) if cookies else []
        cookie_args: list[object] = []
        cookie_keys: list[str] = []
        for visitor_id, raw in zip(cookies, cookie_raws):
            data = decode_dict(raw)
            if VisitorProfile.customer_of(data) not in todo:
                continue  # gone, or moved to another customer since
            visitor = VisitorProfile.from_stored(data)
            visitor.customer_id = survivor_id
            cookie_keys.append(keys.visitor(visitor_id))
            cookie_args += [raw, encode(visitor), visitor_ttl_s]
        script_keys = [keys.customer(survivor_id), keys.identity(survivor_id), keys.alias(survivor_id)]
        args: list[object] = [survivor_id, len(todo), len(cookie_keys), survivor_raw, encode(profile), customer_ttl_s]
        history = orjson.dumps({"at": now, "by": by, "auto": auto})
        for source_root, raw in todo.items():
            script_keys += [keys.customer(source_root), keys.identity(source_root), keys.alias(source_root)]
            args += [raw, history]
        if await script(keys=script_keys + cookie_keys, args=args + cookie_args):
            result.merged = list(todo)
            return result
    raise MergeContention(f"gave up merging into {into!r} after {MAX_ROUNDS} rounds")


def _refuse_missing(ids: Sequence[str], raws: Sequence[bytes | None], is_erased: Callable[[str], bool]) -> None:
    for i, (customer_id, raw) in enumerate(zip(ids, raws)):
        name = "into" if i == 0 else f"from[{i - 1}]"
        if not raw and is_erased(customer_id):
            raise MergeRefused(409, name, f"customer {customer_id!r} was erased")
        if not raw:
            raise MergeRefused(404, name, f"no profile for customer {customer_id!r}")


async def _merge_apart(redis: RedisCluster, into: str, sources: Sequence[str], *, by: str, auto: bool, now: float,
                       customer_ttl_s: int, visitor_ttl_s: int, half_life_s: float,
                       is_erased: Callable[[str], bool], apart: Apart) -> Merged:
    """``merge`` on a Redis Cluster: per id merged away, the single-slot steps of ``merge_apart``.
    A merge an earlier attempt left half done (a crash, a failover) is completed first."""
    completed: set[str] = set()
    for customer_id in dict.fromkeys([into, *sources]):
        sealed = await merge_apart.pending(redis, customer_id)
        if sealed is not None:
            await _complete(redis, sealed, customer_ttl_s=customer_ttl_s, visitor_ttl_s=visitor_ttl_s,
                            half_life_s=half_life_s, apart=apart)
            completed.add(customer_id)
    ids = [into, *sources]
    roots = [await root(redis, c) for c in ids]
    _refuse_missing(ids, await cluster.mget(redis, [keys.customer(r) for r in roots]), is_erased)
    survivor = roots[0]
    result = Merged(survivor)
    history = orjson.dumps({"at": now, "by": by, "auto": auto})
    for i, (source, source_root) in enumerate(zip(sources, roots[1:])):
        if source_root == survivor:
            (result.merged if source in completed else result.already).append(source)
            continue
        if source_root in result.merged:
            continue
        bucket = int(time.time() // apart.dedup_window_s)  # the applier's clock, for the fingerprints
        sealed = await merge_apart.seal(redis, source_root, survivor, history, bucket, replicas=apart.replicas,
                                        timeout_s=apart.timeout_s)
        if sealed is None:
            raise MergeRefused(404, f"from[{i}]", f"no profile for customer {source!r}")
        if isinstance(sealed, str):  # merged by someone else meanwhile: the next attempt sees where
            raise MergeContention(f"{source_root!r} was merged into {sealed!r} meanwhile")
        await _complete(redis, sealed, customer_ttl_s=customer_ttl_s, visitor_ttl_s=visitor_ttl_s,
                        half_life_s=half_life_s, apart=apart)
        result.merged.append(source_root)
    return result


async def _complete(redis: RedisCluster, sealed: merge_apart.Sealed, *, customer_ttl_s: int, visitor_ttl_s: int,
                    half_life_s: float, apart: Apart) -> str:
    """Steps 2 to 4 of a sealed merge, each a no-op where an earlier attempt did it; the survivor."""
    absorbed = CustomerProfile.decode(sealed.profile)
    for lost in range(MAX_ROUNDS):
        if lost:
            await asyncio.sleep(contention_pause(lost))
        survivor = await root(redis, sealed.into)  # merged away since it was sealed: its survivor
        old = await redis.get(keys.customer(survivor)) or b""
        new = encode(combine(CustomerProfile.decode(old), absorbed, half_life_s)) if old else sealed.profile
        status = await merge_apart.absorb(redis, sealed, survivor, old, new, ttl_s=customer_ttl_s,
                                          window_s=apart.dedup_window_s, replicas=apart.replicas,
                                          timeout_s=apart.timeout_s)
        if status > 0:
            break
    else:
        raise MergeContention(f"gave up merging {sealed.source!r} after {MAX_ROUNDS} rounds")
    await merge_apart.repoint(redis, [sealed.source, *sealed.merged_before()], survivor)
    if not await merge_apart.relink(redis, absorbed.visitors, sealed.source, survivor, ttl_s=visitor_ttl_s,
                                    replicas=apart.replicas, timeout_s=apart.timeout_s, rounds=MAX_ROUNDS):
        raise MergeContention(f"gave up relinking the cookies of {sealed.source!r} after {MAX_ROUNDS} rounds")
    if apart.absorbed is not None:
        await apart.absorbed(survivor, sealed.source)
    await merge_apart.clear(redis, sealed.source)
    return survivor


async def merge_recorded(redis: Redis, settings: Settings, into: str, sources: Sequence[str], *, by: str,
                         auto: bool) -> Merged:
    """``merge`` with the shop's settings, recorded in the admin audit log when it merged anything."""
    now = time.time()
    log_dir = settings.log_dir
    on_cluster = isinstance(redis, RedisCluster)
    apart = _apart(redis, settings) if on_cluster else None
    result = await merge(redis, into, sources, by=by, auto=auto, now=now, customer_ttl_s=settings.customer_ttl_s,
                         visitor_ttl_s=settings.visitor_ttl_s, half_life_s=settings.affinity_half_life_s,
                         is_erased=lambda customer_id: digest(customer_id) in erased.load(log_dir).customers,
                         apart=apart)
    if result.merged:
        if not on_cluster:  # on a cluster each absorbed id's were joined before its merge completed
            await _join_declared(redis, result.into, result.merged, ttl_s=settings.customer_ttl_s,
                                 watchers_max=settings.watchers_max)
        await asyncio.to_thread(audit.record, settings.data_dir, "merge", by, [], [result.into, *result.merged], now,
                                auto=auto)
    return result


async def sweep(redis: RedisCluster, settings: Settings, now: float | None = None) -> list[str]:
    """Complete the merges on a Redis Cluster that began ``merge_sweep_s`` ago or more and are still
    pending: an attempt was interrupted (a crash, a failover) and nobody tried again (an admin
    request not retried, a login not repeated). Until then readers follow the alias, but the
    survivor lacks the absorbed profile. Returns the ids whose merge this call completed."""
    now = time.time() if now is None else now
    apart = _apart(redis, settings)
    completed: list[str] = []
    for source in await merge_apart.due(redis, now - settings.merge_sweep_s, now + settings.merge_sweep_s):
        sealed = await merge_apart.pending(redis, source)
        if sealed is None:  # completed meanwhile, or the person was erased
            await merge_apart.clear(redis, source)
            continue
        survivor = await _complete(redis, sealed, customer_ttl_s=settings.customer_ttl_s,
                                   visitor_ttl_s=settings.visitor_ttl_s, half_life_s=settings.affinity_half_life_s,
                                   apart=apart)
        begun = orjson.loads(sealed.history)
        await asyncio.to_thread(audit.record, settings.data_dir, "merge", begun["by"], [], [survivor, source], now,
                                auto=begun["auto"], completed_by="sweep")
        log.info("completed an interrupted customer merge begun at %.0f", begun["at"])
        completed.append(source)
    return completed


def _apart(redis: RedisCluster, settings: Settings) -> Apart:
    async def absorbed(survivor: str, source: str) -> None:
        await _join_declared(redis, survivor, [source], ttl_s=settings.customer_ttl_s,
                             watchers_max=settings.watchers_max)

    return Apart(settings.dedup_window_s, settings.redis_cluster_replicas, settings.redis_socket_timeout_s, absorbed)


async def _join_declared(redis: Redis, into: str, merged: Sequence[str], *, ttl_s: int, watchers_max: int) -> None:
    """Move the merged ids' declared preferences (and their watchers-index entries) onto the
    survivor's record. They are written by PUTs, not events, so this follows the profile merge."""
    survivor = Owner("c", into)
    owners = [Owner("c", c) for c in merged]
    raws = await redis.mget([o.key for o in owners])
    raw_profile = await redis.get(survivor.profile_key)
    wished = CustomerProfile.decode(raw_profile).watching if raw_profile else []
    if wished:  # the merged wishlists are the survivor's now
        async with redis.pipeline(transaction=False) as pipe:
            for item in wished:
                pipe.zadd(keys.watchers(item), {survivor.member: 1}, nx=True)
                pipe.zrem(keys.watchers(item), *(o.member for o in owners))
            await pipe.execute()
    if not any(raws):
        return
    old = await preferences.load(redis, survivor)
    new = old
    for raw in raws:
        new = new.joined(Declared.decode(raw))
    await preferences.save(redis, survivor, new, old, ttl_s=ttl_s, watchers_max=watchers_max)
    await preferences.unindex(redis, [o for o, raw in zip(owners, raws) if raw])
    await redis.delete(*(o.key for o, raw in zip(owners, raws) if raw))
