"""Data subject rights: everything Vitrine holds on a person, exported as one document, or erased.

A person is found from a visitor id or a customer id: the customer it names (or the cookie is
linked to) and every cookie linked to that customer; a customer id merged into another
(``engine.customers.merge``) finds the customer it was merged into, which lists every id merged
into it. Their Redis keys are the profiles, the stored for-you lists, the exposure state, the dedup
buckets and the identity keys (aliases, identity record, email index; ``engine.store.keys``); experiment and
trending counters are totals over everyone and hold nothing of theirs. Their logged events are
found by reading the log, which costs a pass over it (an admin action, not a request path).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from engine.catalog import ItemLookup
from engine.customers.merge import root
from engine.events import erased
from engine.events.log import read_raw
from engine.ingest.checkpoint import Checkpoint
from engine.ingest.erasure import compact
from engine.merch.exposure import Exposure
from engine.merch.segments import DEFAULT_SET, SegmentSet, members
from engine.profiles import preferences, viewers
from engine.profiles.codec import decode_dict
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.view import describe
from engine.store import cluster, keys


@dataclass
class Person:
    visitor_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)  # the surviving one first, then those merged into it
    merges: dict[str, dict[str, Any]] = field(default_factory=dict)  # merged id -> when, by whom
    emails: list[str] = field(default_factory=list)  # hashed emails seen at their logins

    def __bool__(self) -> bool:
        return bool(self.visitor_ids or self.customer_ids)

    def owns(self, event: dict[str, Any]) -> bool:
        return event.get("visitor_id") in self.visitor_ids or event.get("customer_id") in self.customer_ids


async def find(redis: Redis, person_id: str) -> Person:
    """The person ``person_id`` names, as a customer id or a visitor id (or both). When Redis holds
    nothing under either (expired, or never profiled), the id stands for itself as both: its logged
    events may still be there, to export or to erase."""
    raw_customer, raw_visitor, target = await cluster.mget(
        redis, [keys.customer(person_id), keys.visitor(person_id), keys.alias(person_id)])
    person = Person()
    customer_id = target.decode() if target else person_id if raw_customer else None
    if raw_visitor:
        person.visitor_ids.append(person_id)
        customer_id = customer_id or VisitorProfile.customer_of(decode_dict(raw_visitor))
    if customer_id and customer_id != person_id:
        customer_id = await root(redis, customer_id)
        raw_customer = await redis.get(keys.customer(customer_id))
    if customer_id:
        person.customer_ids.append(customer_id)
        identity = await redis.hgetall(keys.identity(customer_id))
        for name, value in identity.items():
            kind, _, rest = name.decode().partition(":")
            if kind == "m":
                person.customer_ids.append(rest)
                person.merges[rest] = orjson.loads(value)
            elif kind == "e":
                person.emails.append(rest)
        if raw_customer:
            for visitor in CustomerProfile.decode(raw_customer).visitors:
                if visitor not in person.visitor_ids:
                    person.visitor_ids.append(visitor)
    return person if person else Person([person_id], [person_id])


def redis_keys(person: Person, dedup_window_s: float, now: float) -> list[str]:
    """Every key of the person's, their identity record, aliases and email index entries included.
    The dedup buckets (a visitor's ``d:``; on a cluster a customer's ``dc:`` too) are the current one
    and its neighbours (the applier writes the current bucket and reads the one before; older ones
    have expired)."""
    bucket = int(now // dedup_window_s)
    out = [k for c in person.customer_ids
           for k in (keys.customer(c), keys.customer_preferences(c), keys.alias(c), keys.identity(c), keys.merging(c),
                     keys.trigger_sends(c), keys.trigger_touches(c),
                     *(keys.customer_dedup(c, b) for b in (bucket - 1, bucket, bucket + 1)))]
    out += [keys.email(sha) for sha in person.emails]
    for v in person.visitor_ids:
        out += [keys.visitor(v), keys.visitor_preferences(v), keys.for_you(v), keys.exposure(v), keys.pages(v),
                keys.trigger_sends(v), keys.trigger_touches(v),
                *(keys.dedup(v, b) for b in (bucket - 1, bucket, bucket + 1))]
    out += [k for c in person.customer_ids for k in (keys.trigger_tiers(c), keys.viewed_items(f"c:{c}"))]
    out += [keys.viewed_items(f"v:{v}") for v in person.visitor_ids]  # engine.profiles.viewers
    return out


def _exposure(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    shown = Exposure.decode(raw)
    return {"block_impressions": {b: len(m) for b, m in shown.blocks.items()}, "items_shown": len(shown.items),
            "experiments": shown.experiments, "clicks": shown.clicks}


def logged_events(log_dir: Path, person: Person) -> list[dict[str, Any]]:
    return [e for e in read_raw(log_dir) if person.owns(e)]


def owners(person: Person) -> list[preferences.Owner]:
    """The person's preference records and watchers-index members: each cookie's and customer's."""
    return [*(preferences.Owner("v", v) for v in person.visitor_ids),
            *(preferences.Owner("c", c) for c in person.customer_ids)]


async def export(redis: Redis, person: Person, *, log_dir: Path, session_timeout_s: float, lookup: ItemLookup,
                 now: float, segments: SegmentSet = DEFAULT_SET) -> dict[str, Any]:
    """One JSON document: profiles, linked ids, exposure and experiment state, and the logged
    events (which hold the consent history)."""
    visitors = person.visitor_ids
    raws = await cluster.mget(redis, [*(keys.visitor(v) for v in visitors), *(keys.exposure(v) for v in visitors),
                                      *(keys.customer(c) for c in person.customer_ids)]) if person else []
    customer_id = person.customer_ids[0] if person.customer_ids else None
    raw_customer = raws[2 * len(visitors)] if customer_id else None
    customer = CustomerProfile.decode(raw_customer) if raw_customer else None
    records = owners(person)
    declared = await cluster.mget(redis, [o.key for o in records]) if records else []
    interests = preferences.interests_of([preferences.Declared.decode(raw) for raw in declared if raw])
    profiles = []
    for i, v in enumerate(visitors):
        if raws[i]:
            visitor = VisitorProfile.decode(raws[i])
            profiles.append(describe(v, visitor, customer_id, customer, now, session_timeout_s, lookup,
                                     segments=members(segments, visitor, customer, now, declared=interests)))
    events = await asyncio.to_thread(logged_events, log_dir, person)
    sent = {p: [{"message": m.decode(), "at": ts} for m, ts in await redis.zrange(keys.trigger_sends(p), 0, -1,
                                                                                  withscores=True)]
            for p in [*person.customer_ids, *visitors]}
    return {
        "exported_at": now,
        "ids": {"visitor_ids": visitors, "customer_ids": person.customer_ids, "email_sha256": person.emails},
        "merges": [{"customer_id": c, **m} for c, m in person.merges.items()],
        "profiles": profiles,
        "customer": profiles[0].get("customer") if profiles else None,
        "exposure": {v: _exposure(raws[len(visitors) + i]) for i, v in enumerate(visitors)},
        "preferences": {o.member: preferences.describe(preferences.Declared.decode(raw), [], None, True)
                        for o, raw in zip(records, declared) if raw},
        "messages": {p: m for p, m in sent.items() if m},  # what triggers sent them (engine.triggers)
        "viewed": {o.member: {k.decode(): int(v) for k, v in counts.items()}  # views, +cart adds (price drops)
                   for o in records if (counts := await redis.hgetall(keys.viewed_items(o.member)))},
        "value_tiers": {c: {k.decode(): v.decode() for k, v in tiers.items()}  # as the value_tier triggers saw them
                        for c in person.customer_ids if (tiers := await redis.hgetall(keys.trigger_tiers(c)))},
        "events": events,
    }


@dataclass
class Erasure:
    keys_deleted: int
    segments_rewritten: list[str]
    segments_pending: list[str]  # still open for writing or not yet applied: rewritten later


async def erase(redis: Redis, person: Person, *, log_dir: Path, dedup_window_s: float, now: float) -> Erasure:
    """Tombstones first (from then on no reader of the log uses their events, and no applier the
    events still waiting in its queue or a topic), then the Redis keys, then the log segments that
    are closed and applied are rewritten without their lines. Their entries in the triggers'
    shared keys are ``engine.triggers.forget``'s."""
    await asyncio.to_thread(erased.record, log_dir, person.visitor_ids, person.customer_ids, now)
    async with redis.pipeline(transaction=False) as pipe:  # one slot per person: no transaction on a cluster
        for key in [*map(keys.visitor, person.visitor_ids), *map(keys.customer, person.customer_ids)]:
            pipe.set(keys.erasure(key), repr(now))
        await pipe.execute()
    await preferences.unindex(redis, owners(person))  # while the records still say which items
    await viewers.unindex(redis, [o.member for o in owners(person)])
    deleted = await redis.delete(*redis_keys(person, dedup_window_s, now)) if person else 0
    offsets = (await Checkpoint(redis).load()).offsets
    rewritten, pending, new_offsets = await asyncio.to_thread(compact, log_dir, offsets)
    if new_offsets:
        await Checkpoint(redis).save(new_offsets)
    return Erasure(deleted, rewritten, pending)
