"""Apply accepted events to the profiles in Redis, exactly once.

The API (embedded mode), the faust workers (Kafka mode) and ``vitrine replay`` all call
``EventApplier.apply``. Per round: one pipelined read of the visitors' profiles and dedup buckets,
the pure ``profiles.apply_event`` fold in Python, then one pipelined write where each visitor's
changes go through a Lua compare-and-set (``lua/apply.lua``). A visitor whose profile changed in
between (another process, a redelivery) is simply re-read and recomputed in the next round, so
duplicates never count twice and concurrent writers never lose updates.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from redis.asyncio import Redis

from engine import exposure, keys
from engine.events import Event
from engine.profiles import ItemLookup, ProfileConfig, apply_event
from engine.trending import TrendingClock

_SCRIPT = (Path(__file__).parent / "lua" / "apply.lua").read_text()
MAX_ROUNDS = 16


def fingerprint(event_id: str) -> bytes:
    """8 bytes per remembered event instead of the whole id: dedup memory is per event."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


@dataclass
class ApplyStats:
    applied: int = 0
    duplicates: int = 0
    rounds: int = 0
    conflicts: int = 0


@dataclass
class _Cas:
    """One profile key: the value read (for the compare) and the value computed."""

    old: bytes
    new: bytes | None = None
    ttl: int = 0


@dataclass
class _Plan:
    visitor_id: str
    done: list[Event] = field(default_factory=list)
    cas: dict[str, _Cas] = field(default_factory=dict)
    fps: list[bytes] = field(default_factory=list)
    trending: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)
    duplicates: int = 0


class EventApplier:
    def __init__(self, redis: Redis, lookup: ItemLookup, profile_config: ProfileConfig, *,
                 visitor_ttl_s: int, customer_ttl_s: int, dedup_window_s: int,
                 trending_clock: TrendingClock, exposure_retention_s: int = 30 * 86400,
                 attribution_window_s: int = 86400) -> None:
        self._redis = redis
        self._lookup = lookup
        self._cfg = profile_config
        self._visitor_ttl = visitor_ttl_s
        self._customer_ttl = customer_ttl_s
        self._window = dedup_window_s
        self._clock = trending_clock
        self._exposure_retention = exposure_retention_s
        self._attribution_window = attribution_window_s
        self._script = redis.register_script(_SCRIPT)

    async def apply(self, events: list[Event]) -> ApplyStats:
        stats = ApplyStats()
        pending: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            pending[event.visitor_id].append(event)
        known_customers: set[str] = set()
        while pending:
            stats.rounds += 1
            if stats.rounds > MAX_ROUNDS:
                raise RuntimeError(f"gave up applying events for {len(pending)} visitors after {MAX_ROUNDS} rounds")
            bucket = int(time.time() // self._window)
            plans, needed = await self._plan(pending, known_customers, bucket)
            known_customers |= needed
            results = await self._write(plans, bucket) if plans else []
            for plan, ok in zip(plans, results):
                queue = pending[plan.visitor_id]
                if ok:
                    del queue[: len(plan.done) + plan.duplicates]
                    stats.applied += len(plan.done)
                    stats.duplicates += plan.duplicates
                else:
                    stats.conflicts += 1
            for visitor_id in [v for v, q in pending.items() if not q]:
                del pending[visitor_id]
        return stats

    async def _plan(self, pending: dict[str, list[Event]], known_customers: set[str],
                    bucket: int) -> tuple[list[_Plan], set[str]]:
        """Read what the pending events touch and fold them; stop a visitor's fold at the first
        event that concerns a customer profile not read yet (it is read in the next round)."""
        visitor_ids = list(pending)
        customer_ids = sorted({e.customer_id for q in pending.values() for e in q if e.customer_id}
                              | known_customers)
        async with self._redis.pipeline(transaction=False) as pipe:
            for vid in visitor_ids:
                pipe.get(keys.visitor(vid))
                fps = [fingerprint(e.event_id) for e in pending[vid]]
                pipe.hmget(keys.dedup(vid, bucket), fps)
                pipe.hmget(keys.dedup(vid, bucket - 1), fps)
                pipe.get(keys.exposure(vid))
            for cid in customer_ids:
                pipe.get(keys.customer(cid))
            replies = await pipe.execute()
        customers: dict[str, _Cas] = {
            cid: _Cas(old=replies[4 * len(visitor_ids) + i] or b"")
            for i, cid in enumerate(customer_ids)
        }
        current_customer: dict[str, bytes] = {cid: cas.old for cid, cas in customers.items()}
        plans: list[_Plan] = []
        needed: set[str] = set()
        now = time.time()
        for i, vid in enumerate(visitor_ids):
            raw_visitor, seen_now, seen_prev, raw_exposure = replies[4 * i: 4 * i + 4]
            plan = _Plan(visitor_id=vid)
            plan.cas[keys.visitor(vid)] = _Cas(old=raw_visitor or b"", ttl=self._visitor_ttl)
            shown = exposure.Exposure.decode(raw_exposure)
            visitor_json = orjson.loads(raw_visitor) if raw_visitor else None
            seen_in_batch: set[bytes] = set()
            for event, dup_now, dup_prev in zip(pending[vid], seen_now, seen_prev):
                fp = fingerprint(event.event_id)
                if dup_now is not None or dup_prev is not None or fp in seen_in_batch:
                    if plan.done:  # keep the queue a prefix: stop before a duplicate mid-fold
                        break
                    plan.duplicates += 1
                    continue
                cid = event.customer_id or (visitor_json or {}).get("c")
                if cid and cid not in customers:
                    needed.add(cid)
                    break
                customer_raw = current_customer.get(cid) if cid else None
                customer_json = orjson.loads(customer_raw) if customer_raw else None
                applied = apply_event(visitor_json, customer_json, event, self._lookup, self._cfg)
                visitor_json = applied.visitor.to_json()
                if applied.customer is not None and applied.customer_id:
                    new_customer = orjson.dumps(applied.customer.to_json())
                    current_customer[applied.customer_id] = new_customer
                    cas = plan.cas.setdefault(keys.customer(applied.customer_id),
                                              _Cas(old=customers[applied.customer_id].old))
                    cas.new, cas.ttl = new_customer, self._customer_ttl
                for item, weight in applied.trending:
                    key, incr, expire_at = self._clock.increment(weight, event.ts)
                    if expire_at > now:  # an old event's epoch is gone already
                        plan.trending[(key, item)] = (plan.trending.get((key, item), (0.0, 0))[0] + incr,
                                                      expire_at)
                if event.type in exposure.EVENTS and applied.visitor.consent is not False:
                    counters = exposure.fold(shown, event, self._price_of, retention_s=self._exposure_retention,
                                             attribution_s=self._attribution_window)
                    for key, member, incr in counters:  # same zset-increment path as trending
                        total = plan.trending.get((key, member), (0.0, 0))[0] + incr
                        plan.trending[(key, member)] = (total, int(now) + exposure.COUNTER_TTL_S)
                elif applied.visitor.consent is False:
                    shown = exposure.Exposure()
                plan.done.append(event)
                plan.fps.append(fp)
                seen_in_batch.add(fp)
            if plan.done:
                plan.cas[keys.visitor(vid)].new = orjson.dumps(visitor_json)
                new_exposure = shown.encode()
                if new_exposure != (raw_exposure or exposure.EMPTY):  # no key for who saw nothing
                    plan.cas[keys.exposure(vid)] = _Cas(old=raw_exposure or b"", new=new_exposure,
                                                        ttl=self._exposure_retention)
                plans.append(plan)
            elif plan.duplicates:
                plans.append(plan)  # nothing to write, but the queue must advance
        # Customers changed by one visitor's plan are the "old" value of the next plan touching
        # them: the scripts run in order, so the chain holds or fails as a whole.
        chained: dict[str, bytes] = {}
        for plan in plans:
            for key, cas in plan.cas.items():
                if key.startswith("c:"):
                    if key in chained:
                        cas.old = chained[key]
                    if cas.new is not None:
                        chained[key] = cas.new
        return plans, needed

    def _price_of(self, item_id: str) -> float | None:
        info = self._lookup(item_id)
        return info.price if info is not None else None

    async def _write(self, plans: list[_Plan], bucket: int) -> list[bool]:
        expire_at = int((bucket + 2) * self._window)
        async with self._redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                if not plan.done:
                    continue
                cas_keys = list(plan.cas)
                args: list[object] = [len(cas_keys)]
                for key in cas_keys:
                    cas = plan.cas[key]
                    args += [cas.old, cas.new or b"", cas.ttl]
                args += [expire_at, len(plan.fps), *plan.fps]
                trend_keys = []
                for (key, item), (incr, trend_expire) in plan.trending.items():
                    trend_keys.append(key)
                    args += [item, incr, trend_expire]
                await self._script(
                    keys=[*cas_keys, keys.dedup(plan.visitor_id, bucket),
                          keys.dedup(plan.visitor_id, bucket - 1), *trend_keys],
                    args=args,
                    client=pipe,
                )
            replies = iter(await pipe.execute())
        return [bool(next(replies)) if plan.done else True for plan in plans]
