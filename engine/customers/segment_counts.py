"""How many people each segment holds, estimated from a bounded sample of visitor profiles: a
dashboard may call it every few seconds, so no call reads all of Redis.

A SCAN walks the keyspace in hash-table order (unrelated to who a person is, so the visitor
profiles it meets are a fair sample) until it has ``sample`` of them or has looked at
``MAX_SCAN_PER_SAMPLE`` keys per wanted profile. Each sampled profile (with its customer's, when
linked) is evaluated as a request would; a segment's count is its share of the sample times the
number of visitor profiles, exact when the scan went through the whole keyspace, else estimated
as the share of visitor keys among the keys scanned times DBSIZE. The result is kept ``ttl_s``.
The unit is the visitor profile (a cookie): a customer on two devices counts twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.merch.segments import Declared, Scorer, SegmentSet, members
from engine.profiles.consent import withdrawn
from engine.profiles.preferences import Declared as Record, Owner, interests_of
from engine.profiles.codec import decode_dict
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.view import iso
from engine.store import cluster, keys

SCAN_COUNT = 1000
MAX_SCAN_PER_SAMPLE = 50  # keys looked at per sampled profile at most: bounds the work in a Redis of few visitors
SAMPLE_MEMBERS = 10


@dataclass(frozen=True)
class Sample:
    visitor_ids: list[str]
    visitors: list[VisitorProfile]
    customers: list[CustomerProfile | None]
    total: int  # visitor profiles in Redis (estimated unless exact)
    exact: bool  # the scan saw every key
    declared: list[Declared] | None = None  # each one's usable declared interests, when segments read them


async def sample_profiles(redis: Redis, size: int, declared: bool = False) -> Sample:
    """Up to ``size`` visitor profiles (and their customers) found by a bounded SCAN; with
    ``declared``, their declared interests too."""
    scanned, found, exact = 0, [], True
    visitor_prefix = keys.visitor("")[:-1].encode()  # b"v:{", after the shop's prefix if any
    async for key in redis.scan_iter(count=SCAN_COUNT):  # on a cluster: every primary's keys in turn
        if len(found) >= size or scanned >= MAX_SCAN_PER_SAMPLE * size:
            exact = False
            break
        scanned += 1
        key = key if isinstance(key, bytes) else key.encode()
        if key.startswith(visitor_prefix):
            found.append(key)
    total = len(found) if exact else round(len(found) * await cluster.dbsize(redis) / max(scanned, 1))
    found = list(dict.fromkeys(found))[:size]  # SCAN may return a key twice
    raws = await cluster.mget(redis, found) if found else []
    ids, visitors, linked = [], [], []
    for key, raw in zip(found, raws):
        if not raw:
            continue  # expired since the scan
        data = decode_dict(raw)
        ids.append(keys.visitor_of(key.decode()))
        linked.append(VisitorProfile.customer_of(data))
        visitors.append(VisitorProfile.from_stored(data))
    wanted = sorted({c for c in linked if c})
    by_id = dict(zip(wanted, await cluster.mget(redis, [keys.customer(c) for c in wanted]))) if wanted else {}
    customers = [CustomerProfile.decode(by_id[c]) if c and by_id.get(c) else None for c in linked]
    interests = None
    if declared and ids:
        owners = [Owner("c", c) if c else Owner("v", v) for v, c in zip(ids, linked)]
        records = await cluster.mget(redis, [o.key for o in owners])
        interests = [interests_of([Record.decode(r)]) if r and not withdrawn(v, c) else ((), ())
                     for r, v, c in zip(records, visitors, customers)]
    return Sample(ids, visitors, customers, max(total, len(ids)), exact, interests)


def estimate(segments: SegmentSet, sample: Sample, now: float, scorer: Scorer | None = None) -> dict[str, Any]:
    """Each segment's estimated size and a few of its members (visitor ids), from ``sample``."""
    hits: dict[str, list[str]] = {name: [] for name in segments.rules}
    declared = sample.declared or [((), ())] * len(sample.visitor_ids)
    for visitor_id, v, c, d in zip(sample.visitor_ids, sample.visitors, sample.customers, declared):
        for name in members(segments, v, c, now, scorer, d):
            hits[name].append(visitor_id)
    n = len(sample.visitor_ids)
    scale = sample.total / n if n else 0.0
    method = (f"counted over all {n} visitor profiles" if sample.exact and n == sample.total else
              f"estimated from a sample of {n} visitor profiles, scaled to about {sample.total}")
    return {
        "segments": [{"name": name, "source": segments.sources[name], "description": rule.description,
                      "count": round(len(hits[name]) * scale), "sample": hits[name][:SAMPLE_MEMBERS]}
                     for name, rule in segments.rules.items()],
        "count_method": method,
        "sample_size": n,
        "total": sample.total,
        "unit": "visitor profile",
        "computed_at": iso(now),
    }


class SegmentCounts:
    """The last estimate per rules version, reused for ``ttl_s``; one computation at a time."""

    def __init__(self, redis: Redis, sample: int, ttl_s: float) -> None:
        self._redis, self._sample, self._ttl_s = redis, sample, ttl_s
        self._last: tuple[str, float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def get(self, version: str, segments: SegmentSet, scorer: Scorer | None) -> dict[str, Any]:
        async with self._lock:
            now = time.time()
            if self._last is not None and self._last[0] == version and now - self._last[1] < self._ttl_s:
                return self._last[2]
            sample = await sample_profiles(self._redis, self._sample, segments.needs_declared)
            result = estimate(segments, sample, now, scorer)
            result["rules_version"] = version
            self._last = (version, now, result)
            return result
