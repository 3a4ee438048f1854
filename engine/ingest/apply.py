"""Apply accepted events to the profiles in Redis, exactly once.

The API (embedded mode), the faust workers (Kafka mode) and ``vitrine replay`` all call
``EventApplier.apply``. Per round: one round trip reads the visitors' profiles and dedup buckets
(``lua/read.lua``), ``profiles.fold_event`` folds the events in Python (no I/O), then one round trip
writes, each visitor's changes going through a Lua compare-and-set (``lua/apply.lua``). A visitor
whose profile changed in between (another process, a redelivery) is simply re-read and recomputed
in the next round, so duplicates never count twice and concurrent writers never lose updates.
Visitors are sent 64 to a script call: per-command client overhead was most of the cost of a
pipeline with four commands per visitor, and short calls keep Redis responsive to readers.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import random
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import (ClusterDownError, NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError,
                              ResponseError, TryAgainError)

from engine.merch import exposure

from engine.store import keys
from engine.store.latency import LatencyHistogram, RedisLatency
from engine.events.schema import Event
from engine.catalog import ItemLookup
from engine.profiles.codec import EMPTY_PROFILE, encode
from engine.profiles.consent import stale, withdrawn
from engine.profiles.fold import bounced, fold_event
from engine.profiles.preferences import watcher_member
from engine.profiles.shapes import CustomerProfile, ProfileConfig, VisitorProfile
from engine.ranking.trending import TrendingClock

if TYPE_CHECKING:  # a floor above: the engine hands the applier its hook
    from engine.triggers.hook import Op as TriggerOp
    from engine.triggers.hook import TriggerHook

_SCRIPT = (Path(__file__).parent / "lua" / "apply.lua").read_text()
_READ_SCRIPT = (Path(__file__).parent / "lua" / "read.lua").read_text()
MAX_ROUNDS = 16
CHUNK = 64  # visitors per script call
FIRST_PAUSE_S = 0.001  # the longest pause after the first round a compare-and-set lost
MAX_PAUSE_S = 0.064


def fingerprint(event_id: str) -> bytes:
    """8 bytes per remembered event instead of the whole id: dedup memory is per event."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def _pack(args: list[object]) -> bytes:
    """Script arguments as one MessagePack array for Lua's ``cmsgpack`` (strings as raw bytes)."""
    return msgpack.packb(args, use_bin_type=False)


class ApplyContention(RuntimeError):
    """Other writers kept changing the same profiles; retrying later is the answer."""


def contention_pause(lost: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait before re-reading after ``lost`` rounds whose compare-and-set another writer
    won: exponential with full jitter. Writers that lost together and re-read at once collide again
    (lockstep), so a hot customer written by many processes could run out of rounds; spread apart,
    one of them wins each time."""
    return draw() * min(FIRST_PAUSE_S * 2 ** (lost - 1), MAX_PAUSE_S)


# Redis refusing or unable to serve for now, whatever the data: worth waiting out.
_SERVER_STATE = (OutOfMemoryError, ReadOnlyError, NoScriptError, TryAgainError, ClusterDownError)
_SERVER_STATE_CODES = frozenset({"OOM", "READONLY", "NOSCRIPT", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "MISCONF",
                                 "NOREPLICAS", "LOADING", "MASTERDOWN"})
_PIPELINE_PREFIX = "of pipeline caused error: "  # redis-py's annotation of a failed pipeline command
_LUA_62_INNER = re.compile(r"@user_script: ?\d+: -?([A-Z]+)\b")


def error_code(message: str) -> str:
    """The code (first word) of a Redis error reply, as the server meant it. redis-py prefixes a
    failed pipeline command's error with the command, and Redis 6.2 wraps an error raised by a
    command inside a Lua script (``Error running script (call to f_...): @user_script:46:
    @user_script: 46: -OOM command not allowed ...``) where Redis 7 answers ``OOM ...``."""
    message = message.rpartition(_PIPELINE_PREFIX)[2]
    if message.startswith(("Error running script", "ERR Error running script")):
        inner = _LUA_62_INNER.findall(message)
        if inner:
            return inner[-1]
    return message.split(" ", 1)[0]


def transient(exc: BaseException) -> bool:
    """Whether applying may succeed later: Redis is down, slow, busy or refusing writes, or other
    writers kept changing the same profiles. An error about the stored data itself (``WRONGTYPE``
    on a key that is not a profile, a ``CorruptProfile``) fails the same way every time, so
    retrying it would hold every later event behind it for ever."""
    if isinstance(exc, ResponseError):
        return isinstance(exc, _SERVER_STATE) or error_code(str(exc)) in _SERVER_STATE_CODES
    return isinstance(exc, (RedisError, OSError, TimeoutError, ApplyContention))


@dataclass
class ApplyStats:
    applied: int = 0
    duplicates: int = 0
    erased: int = 0  # accepted before their person was erased: not applied
    rounds: int = 0


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
    erased: int = 0
    triggers: list[TriggerOp] = field(default_factory=list)
    touched: dict[str, list[bytes]] = field(default_factory=dict)  # customer id -> fingerprints that changed it
    counts: list[tuple[bytes, str, str, float, int]] = field(default_factory=list)  # per event, for the cluster

    def count(self, fp: bytes, key: str, member: str, incr: float, expire_at: int) -> None:
        """Add to a shared counter (a zset member): summed per plan, and kept per event, which the
        cluster applier counts once each (engine.ingest.cluster)."""
        self.trending[(key, member)] = (self.trending.get((key, member), (0.0, 0))[0] + incr, expire_at)
        self.counts.append((fp, key, member, incr, expire_at))


class EventApplier:
    def __init__(self, redis: Redis, lookup: ItemLookup, profile_config: ProfileConfig, *,
                 visitor_ttl_s: int, customer_ttl_s: int, dedup_window_s: int, bounce_ttl_s: int | None = None,
                 trending_clock: TrendingClock, exposure_retention_s: int = 30 * 86400,
                 attribution_window_s: int = 86400, known_arm: exposure.KnownArm = lambda e, a: False,
                 known_item: Callable[[str], bool] = lambda item_id: True,
                 on_applied: Callable[[list[str]], None] | None = None,
                 observe: Callable[[list[Event]], None] | None = None,
                 logins: Callable[[list[Event]], Awaitable[object]] | None = None,
                 triggers: TriggerHook | None = None, latency: RedisLatency | None = None) -> None:
        """``known_arm``: whether the live rules can assign an experiment arm; only those are
        counted (by default none: no rules, no experiments). ``known_item``: whether an item may
        enter the trending counters (the engine's: it is in the catalogue, if there is one), so
        made-up ids cannot push real items out of trending; events about other items still reach
        the profiles. ``on_applied``: told which visitors' events an ``apply`` call wrote
        (engine.ranking.stored queues their lists); it must not block. ``observe``: shown the events
        of each ``apply`` call once applied (engine.ranking.sessions); it must not block. ``logins``:
        awaited with the events of each ``apply`` call once applied (the automatic merges of
        engine.customers.logins, which need the profiles written). ``triggers``: arms and cancels
        the triggers' occurrences after the profiles are written. ``latency``: observes how long each
        read and write pipeline waited for Redis."""
        self._redis = redis
        self._lookup = lookup
        self._cfg = profile_config
        self._visitor_ttl = visitor_ttl_s
        # A bounced visitor's profile (``profiles.bounced``) until they come back for more.
        self._bounce_ttl = min(bounce_ttl_s or visitor_ttl_s, visitor_ttl_s)
        self._customer_ttl = customer_ttl_s
        self._window = dedup_window_s
        self._clock = trending_clock
        self._exposure_retention = exposure_retention_s
        self._attribution_window = attribution_window_s
        self._known_arm = known_arm
        self._known_item = known_item
        self._on_applied = on_applied
        self._observe = observe
        self._logins = logins
        self._triggers = triggers
        self._script = redis.register_script(_SCRIPT)
        self._read_script = redis.register_script(_READ_SCRIPT)
        latency = latency or RedisLatency()
        self._read_latency, self._write_latency = latency.histogram("apply_read"), latency.histogram("apply_write")
        self.applied_total = self.duplicates_total = 0  # events since start (engine.observe exports them)

    async def apply(self, events: list[Event]) -> ApplyStats:
        stats = ApplyStats()
        pending: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            pending[event.visitor_id].append(event)
        known_customers: set[str] = set()
        written: dict[str, None] = {}
        trigger_ops: list[TriggerOp] = []
        lost = 0  # rounds in which another writer changed a profile first
        while pending:
            stats.rounds += 1
            if stats.rounds > MAX_ROUNDS:
                raise ApplyContention(f"gave up applying events for {len(pending)} visitors after {MAX_ROUNDS} rounds")
            bucket = int(time.time() // self._window)
            plans, needed = await self._plan(pending, known_customers, bucket)
            known_customers |= needed
            results = await self._write(plans, bucket) if plans else []
            for plan, ok in zip(plans, results):
                queue = pending[plan.visitor_id]
                if ok:
                    del queue[: len(plan.done) + plan.duplicates + plan.erased]
                    stats.applied += len(plan.done)
                    stats.duplicates += plan.duplicates
                    stats.erased += plan.erased
                    trigger_ops += plan.triggers
                    if plan.done:
                        written[plan.visitor_id] = None
            for visitor_id in [v for v, q in pending.items() if not q]:
                del pending[visitor_id]
            if pending and not all(results):
                lost += 1
                await asyncio.sleep(contention_pause(lost))
        if trigger_ops and self._triggers is not None:
            await self._triggers.write(trigger_ops)
        if self._logins is not None:
            await self._logins(events)
        if written and self._on_applied is not None:
            self._on_applied(list(written))
        if self._observe is not None:
            self._observe(events)
        self.applied_total += stats.applied
        self.duplicates_total += stats.duplicates
        return stats

    async def _plan(self, pending: dict[str, list[Event]], known_customers: set[str],
                    bucket: int) -> tuple[list[_Plan], set[str]]:
        """Read what the pending events touch and fold them; stop a visitor's fold at the first
        event that concerns a customer profile not read yet (it is read in the next round)."""
        visitor_ids = list(pending)
        customer_ids = sorted({e.customer_id for q in pending.values() for e in q if e.customer_id}
                              | known_customers)
        fingerprints = {vid: [fingerprint(e.event_id) for e in pending[vid]] for vid in visitor_ids}
        visitor_replies, customer_replies, alias_replies, erasure_replies = await self._read(
            visitor_ids, fingerprints, customer_ids, bucket)
        customers: dict[str, _Cas] = {
            cid: _Cas(old=raw or b"") for cid, raw in zip(customer_ids, customer_replies)
        }
        # A customer id merged into another (engine.customers.merge) stands for it: its events go
        # there. A merge in between changes a profile read here, so this plan's compare-and-set fails.
        aliases = {cid: target.decode() for cid, target in zip(customer_ids, alias_replies) if target}
        # Events accepted up to a person's erasure are not theirs to apply any more (keys.erasure).
        customer_erased = {cid: float(at) for cid, at in zip(customer_ids, erasure_replies) if at}
        loaded: dict[str, CustomerProfile] = {}  # folded in place, plan after plan
        plans: list[_Plan] = []
        needed: set[str] = set()
        now = time.time()
        for i, vid in enumerate(visitor_ids):
            raw_visitor, seen, raw_exposure, raw_erased = visitor_replies[4 * i: 4 * i + 4]
            plan = _Plan(visitor_id=vid)
            plan.cas[keys.visitor(vid)] = _Cas(old=raw_visitor or b"", ttl=self._visitor_ttl)
            # Compared, never written: an erase between this read and the write makes the write fail.
            plan.cas[keys.erasure(keys.visitor(vid))] = _Cas(old=raw_erased or b"")
            erased_at = float(raw_erased) if raw_erased else None
            shown = exposure.Exposure.decode(raw_exposure)
            visitor = VisitorProfile.decode(raw_visitor)
            changed: set[str] = set()
            seen_in_batch: set[bytes] = set()
            for event, fp, recorded in zip(pending[vid], fingerprints[vid], seen):
                if recorded == 49 or fp in seen_in_batch:  # b"1": applied already, or earlier in this batch
                    plan.duplicates += 1  # skipped where it stands: what the round consumes stays a prefix
                    continue
                if erased_at is not None and event.rt <= erased_at:
                    plan.erased += 1  # skipped where it stands, as a duplicate is
                    continue
                cid = event.customer_id or visitor.customer_id
                if cid and cid not in customers:
                    needed.add(cid)
                    break
                if cid in aliases:
                    cid = aliases[cid]
                    if cid not in customers:
                        needed.add(cid)
                        break
                    if visitor.customer_id in aliases:
                        visitor.customer_id = cid
                    if event.customer_id:
                        event = event.model_copy(update={"customer_id": cid})
                if cid in customer_erased and event.rt <= customer_erased[cid]:
                    plan.erased += 1
                    continue
                customer = None
                if cid:
                    if cid not in loaded:
                        raw = customers[cid].old
                        loaded[cid] = CustomerProfile.decode(raw)
                    customer = loaded[cid]
                if stale(visitor, customer):  # what this cookie was shown goes with its behaviour
                    shown = exposure.Exposure()
                new_customer = customer is None or not customer.first_seen
                visits = visitor.visits
                replayed = customer is not None and self._customer_has(cid, fp)
                kept = copy.deepcopy(customer) if replayed else None
                applied = fold_event(visitor, customer, event, self._lookup, self._cfg)
                visitor = applied.visitor
                if replayed and cid:  # the customer holds this event already: only the visitor takes it
                    loaded[cid] = kept
                elif applied.customer is not None and applied.customer_id:
                    loaded[applied.customer_id] = applied.customer
                    changed.add(applied.customer_id)
                    plan.touched.setdefault(applied.customer_id, []).append(fp)
                if applied.trending:
                    key, growth, expire_at = self._clock.increment(1.0, event.ts)
                    if expire_at > now:  # an old event's epoch is gone already
                        for item, weight in applied.trending:
                            if self._known_item(item):
                                plan.count(fp, key, item, weight * growth, expire_at)
                forgotten = withdrawn(visitor, loaded.get(cid) if cid else None, self._cfg.consent_required)
                if event.type == "add_to_wishlist" and not forgotten:  # the watchers index, written with the watch
                    plan.count(fp, keys.watchers(event.item_id or ""), watcher_member(vid, applied.customer_id), 1, 0)
                if self._triggers is not None and not forgotten:
                    owner = applied.customer_id or cid
                    plan.triggers += self._triggers.decide(
                        event, visitor, loaded.get(owner) if owner else None, owner,
                        new_customer=bool(owner) and new_customer, new_visit=visitor.visits > visits > 0)
                if event.type in exposure.EVENTS and not forgotten:
                    counters = exposure.fold(shown, event, self._price_of, retention_s=self._exposure_retention,
                                             attribution_s=self._attribution_window, known=self._known_arm)
                    for key, member, incr in counters:  # same zset-increment path as trending
                        plan.count(fp, key, member, incr, 0)  # 0: no TTL, never evicted
                elif forgotten:  # what the person was shown and clicked goes with the rest
                    shown = exposure.Exposure()
                plan.done.append(event)
                plan.fps.append(fp)
                seen_in_batch.add(fp)
            if plan.done:
                new_visitor = encode(visitor)
                if raw_visitor or new_visitor != EMPTY_PROFILE:  # no key for who is not profiled (opt-in)
                    plan.cas[keys.visitor(vid)].new = new_visitor
                    if bounced(visitor):
                        plan.cas[keys.visitor(vid)].ttl = self._bounce_ttl
                for cid in changed:
                    plan.cas[keys.customer(cid)] = _Cas(old=customers[cid].old, ttl=self._customer_ttl,
                                                        new=encode(loaded[cid]))
                new_exposure = shown.encode()
                if new_exposure != (raw_exposure or exposure.EMPTY):  # no key for who saw nothing
                    plan.cas[keys.exposure(vid)] = _Cas(old=raw_exposure or b"", new=new_exposure,
                                                        ttl=self._exposure_retention)
                plans.append(plan)
            elif plan.duplicates or plan.erased:
                plans.append(plan)  # nothing to write, but the queue must advance
        # Customers changed by one visitor's plan are the "old" value of the next plan touching
        # them: the scripts run in order, so the chain holds or fails as a whole.
        chained: dict[str, bytes] = {}
        for plan in plans:
            for key, cas in plan.cas.items():
                if keys.is_customer(key):
                    if key in chained:
                        cas.old = chained[key]
                    if cas.new is not None:
                        chained[key] = cas.new
        return plans, needed

    def _customer_has(self, customer_id: str, fp: bytes) -> bool:
        """Whether the customer's profile holds this event already. One Redis writes a visitor and
        their customer in one script, so never; the cluster applier writes them apart."""
        return False

    def _price_of(self, item_id: str) -> float | None:
        info = self._lookup(item_id)
        return info.price if info is not None else None

    async def _read(self, visitor_ids: list[str], fingerprints: dict[str, list[bytes]],
                    customer_ids: list[str], bucket: int) -> tuple[list, list, list, list]:
        """(profile, b"0"/b"1" seen flags, exposure, erasure time) per visitor, then the customers'
        profiles, aliases (``keys.alias``) and erasure times: one script call per ``CHUNK`` visitors,
        all in one pipeline (one round trip)."""
        calls: list[tuple[AsyncScript, list[str], list[object]]] = []
        for start in range(0, max(len(visitor_ids), 1), CHUNK):
            chunk = visitor_ids[start:start + CHUNK]
            keys_: list[str] = []
            args: list[object] = [len(chunk)]
            for vid in chunk:
                keys_ += [keys.visitor(vid), keys.dedup(vid, bucket), keys.dedup(vid, bucket - 1),
                          keys.exposure(vid), keys.erasure(keys.visitor(vid))]
                args.append(b"".join(fingerprints[vid]))
            if start + CHUNK >= len(visitor_ids):
                keys_ += ([keys.customer(c) for c in customer_ids] + [keys.alias(c) for c in customer_ids]
                          + [keys.erasure(keys.customer(c)) for c in customer_ids])
            calls.append((self._read_script, keys_, args))
        executed = await self._run(calls, self._read_latency)
        replies = [value for chunk in executed for value in chunk]
        split, n = 4 * len(visitor_ids), len(customer_ids)
        return replies[:split], replies[split:split + n], replies[split + n:split + 2 * n], replies[split + 2 * n:]

    async def _write(self, plans: list[_Plan], bucket: int) -> list[bool]:
        """One script call per ``CHUNK`` plans, all in one pipeline. Chunks keep each call short:
        Redis serves nobody else while a script runs. The arguments go as one MessagePack array:
        the client's cost is per argument, and a plan has several per event."""
        expire_at = int((bucket + 2) * self._window)
        writing = [plan for plan in plans if plan.done]
        calls: list[tuple[AsyncScript, list[str], list[object]]] = []
        for start in range(0, len(writing), CHUNK):
            chunk = writing[start:start + CHUNK]
            keys_: list[str] = []
            args: list[object] = [expire_at, len(chunk)]
            for plan in chunk:
                cas_keys = list(plan.cas)
                keys_ += cas_keys
                keys_ += [keys.dedup(plan.visitor_id, bucket), keys.dedup(plan.visitor_id, bucket - 1)]
                args.append(len(cas_keys))
                for cas in plan.cas.values():
                    args += (cas.old, cas.new or b"", cas.ttl)
                args += (b"".join(plan.fps), len(plan.trending))
                for (key, item), (incr, trend_expire) in plan.trending.items():
                    keys_.append(key)
                    args += (item, repr(incr), trend_expire)
            calls.append((self._script, keys_, [_pack(args)]))
        executed = await self._run(calls, self._write_latency) if calls else []
        written = iter([bool(ok) for chunk in executed for ok in chunk])
        return [next(written) if plan.done else True for plan in plans]

    async def _run(self, calls: list[tuple[AsyncScript, list[str], list[object]]], latency: LatencyHistogram) -> list:
        """The script calls in one pipeline, one round trip: sent as EVALSHA, since redis-py's
        pipeline would first ask SCRIPT EXISTS in a round trip of its own. A server that lost the
        scripts (restarted, flushed) answers NOSCRIPT: they are loaded and the calls sent again."""
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys_, args in calls:
                    pipe.evalsha(script.sha, len(keys_), *keys_, *args)
                try:
                    started = time.perf_counter()
                    executed = await pipe.execute()
                    latency.observe(time.perf_counter() - started)
                    return executed
                except NoScriptError:
                    if attempt == 2:
                        raise
            for script in {script for script, _, _ in calls}:
                await self._redis.script_load(script.script)
        raise AssertionError("unreachable")
