"""Automatic merges: a login may carry ``properties.email_sha256`` (the SHA-256 of the normalised
email, computed by the site). Its first holder is indexed (``em:<hash>`` -> customer id); when a
second customer id logs in with a hash another one holds, the two are one person and are merged
through ``engine.customers.merge``, the older record (first seen earlier; on a tie, the one that
held the hash first) surviving, so the id a CRM has known longest stays the person's id.

The raw email never reaches Vitrine; the hash is kept only in the index and in the survivor's
identity record (so erasing the person removes it), and is never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis, RedisCluster

from engine.customers.merge import Merged, MergeRefused, merge_recorded, root
from engine.events.schema import Event
from engine.profiles.shapes import CustomerProfile
from engine.settings import Settings
from engine.store import cluster, keys

Merge = Callable[[str, list[str]], Awaitable[Merged]]  # (into, sources) -> what was merged


def emails(events: Iterable[Event]) -> list[tuple[str, str]]:
    """(customer id, email hash) of the logins that carry one, from people who did not withdraw
    consent with the event (nobody is matched across records against their choice)."""
    return [(e.customer_id, str(e.properties["email_sha256"]).lower()) for e in events
            if e.type == "login" and e.customer_id and "email_sha256" in e.properties
            and e.profiling_choice() is not False]


async def match(redis: Redis, logins: list[tuple[str, str]], merge: Merge) -> list[Merged]:
    """Index each login's hash and merge the customer ids that share one; returns the merges done.
    On a Redis Cluster a login of ids merged already goes through the merge again: it completes a
    merge a crash left half done (engine.customers.merge_apart), and changes nothing otherwise."""
    done: list[Merged] = []
    for customer_id, sha in logins:
        mine = await root(redis, customer_id)
        await redis.hset(keys.identity(mine), f"e:{sha}", "1")
        if await redis.set(keys.email(sha), mine, nx=True):
            continue
        held = await redis.get(keys.email(sha))
        holder = await root(redis, held.decode()) if held else mine
        if holder == mine:
            merged_here = [c for c in dict.fromkeys([customer_id, held.decode() if held else mine]) if c != mine]
            if merged_here and isinstance(redis, RedisCluster):  # an interrupted merge: completed now
                completed = await merge(mine, merged_here)
                if completed.merged:
                    done.append(completed)
            continue
        raws = await cluster.mget(redis, [keys.customer(holder), keys.customer(mine)])
        if not raws[0]:  # the holder's record is gone (expired or erased): the hash is the newcomer's
            await redis.set(keys.email(sha), mine)
            continue
        older, younger = holder, mine
        if raws[1] and 0 < CustomerProfile.decode(raws[1]).first_seen < CustomerProfile.decode(raws[0]).first_seen:
            older, younger = mine, holder
        try:
            done.append(await merge(older, [younger]))
        except MergeRefused:
            continue  # e.g. the newcomer has no profile (not profiled: no consent): nothing to merge
    return done


async def after_apply(redis: Redis, settings: Settings, events: list[Event]) -> None:
    """The applier's ``logins`` hook: match the logins of a batch just applied."""
    found = emails(events)
    if found:
        await match(redis, found, lambda into, sources: merge_recorded(redis, settings, into, sources, by="login",
                                                                         auto=True))
