"""The apply path's side of the triggers: which applied events arm, move or cancel an occurrence,
and which count as a conversion for a recent delivery.

``decide`` is pure and cheap (most event types interest no kind: one dict lookup); ``write``
sends what the batch decided in one pipeline after the profiles are written. Occurrences whose
due time is already long past (a replay of old events) are not scheduled.

On a Redis Cluster the batch is one transaction in the ``{tg}`` slot (queue, once-index, counters)
and, before it, the steps in the people's own slots (pipelined across the nodes, in the batch's
order per slot): a value tier is swapped in ``tg:vt:`` first
and its occurrence armed in the transaction; a conversion reads ``tg:t:`` first and counts in the
transaction; a view is counted in ``wp:`` then ``wb:`` (``engine.profiles.viewers``). As on one
Redis, these writes come after the events are applied and are not retried: a crash in between loses
them (nothing armed twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.events.schema import Event
from engine.profiles import viewers
from engine.profiles.preferences import Watcher, watcher_member
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.store import cluster
from engine.store import keys as store_keys
from engine.triggers import keys
from engine.triggers.decisions import Arm, Moved, Noted, Seen
from engine.triggers.kinds import KINDS, interested
from engine.triggers.queue import Queue

log = logging.getLogger(__name__)

_ARM_ONCE = """
if redis.call('HSETNX', KEYS[3], ARGV[1], 1) == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
end
return 0
"""

# Record the person's new value; arm only when the value recorded before is one that fires.
_MOVED = """
local old = redis.call('HGET', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[6])
if not old or old == ARGV[5] then return 0 end
for i = 7, #ARGV do
  if ARGV[i] == old then
    redis.call('HSET', KEYS[2], ARGV[1], string.sub(ARGV[3], 1, -2) .. ',"from":"' .. old .. '"}')
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
    return 1
  end
end
return 0
"""

# On a cluster, a value tier's first step: record the new value, return the one recorded before.
_SWAP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return old
"""

# A purchase or a return visit within a touch's window converts the person in that trigger's arm;
# ARGV[4]: the counters' prefix (keys.Names.prefix).
_CONVERT = """
local t = redis.call('HGETALL', KEYS[1])
local now, revenue = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, #t, 2 do
  local arm, ts, win = string.match(t[i + 1], '^([^|]+)|([^|]+)|([^|]+)$')
  ts, win = tonumber(ts), tonumber(win)
  if ts and now >= ts and now <= ts + win then
    redis.call('SADD', ARGV[4] .. 'c:' .. t[i] .. ':' .. arm, ARGV[3])
    if revenue > 0 then
      redis.call('HINCRBYFLOAT', ARGV[4] .. 'r:' .. t[i] .. ':' .. arm, ARGV[3], ARGV[2])
    end
  end
end
return 0
"""


def member(trigger_id: str, scope: str, visitor_id: str, customer_id: str | None) -> str | None:
    if scope == "customer":
        return f"{trigger_id}|c:{customer_id}" if customer_id else None
    return f"{trigger_id}|v:{visitor_id}"


@dataclass(frozen=True)
class Op:
    kind: str  # "arm", "once", "moved", "note", "cancel" or "convert"
    member: str  # the occurrence; for "convert", the person
    due: float = 0.0  # for "convert", the event's time
    data: dict[str, Any] | None = None
    revenue: float = 0.0
    moved: Moved | None = None


class TriggerHook:
    def __init__(self, redis: Redis, triggers: Callable[[], dict[str, Any]], lookup: Callable[[str], Any], *,
                 shop_model: Callable[[], Any] = lambda: None, late_s: float = 3600.0,
                 clock: Callable[[], float] = time.time, state_ttl_s: int = 3 * 365 * 86400,
                 viewers_ttl_s: int = 30 * 86400, viewers_max: int = 10_000) -> None:
        """``triggers``: the live rules' trigger definitions (id -> model), read per event so a
        reload applies at once. ``late_s``: an occurrence due longer ago than this is not
        scheduled (events replayed from the log). ``state_ttl_s``: how long a person's recorded
        tiers are kept (a customer profile's retention). ``viewers_ttl_s``, ``viewers_max``: the
        behaviour watchers' bounds (``engine.profiles.viewers``)."""
        self._redis = redis
        self._triggers = triggers
        self._lookup = lookup
        self._shop_model = shop_model
        self._late_s = late_s
        self._clock = clock
        self._state_ttl_s = state_ttl_s
        self._viewers = (viewers_ttl_s, viewers_max)
        self._by_kind: tuple[dict[str, Any] | None, dict[str, list[tuple[str, Any]]]] = (None, {})
        self._names = keys.names(cluster.on_cluster(redis))
        self.queue = Queue(redis, self._names.occurrences)
        self._once = redis.register_script(_ARM_ONCE)
        self._convert = redis.register_script(_CONVERT)
        self._moved = redis.register_script(_MOVED)
        self._swap = redis.register_script(_SWAP)
        self._noter = viewers.Noter(redis, viewers_ttl_s, viewers_max)

    def _index(self) -> dict[str, list[tuple[str, Any]]]:
        defined = self._triggers()
        if self._by_kind[0] is not defined:  # the rules were reloaded
            index: dict[str, list[tuple[str, Any]]] = {}
            for tid, trigger in defined.items():
                if trigger.enabled:
                    index.setdefault(trigger.kind, []).append((tid, trigger))
            self._by_kind = (defined, index)
        return self._by_kind[1]

    def decide(self, event: Event, visitor: VisitorProfile, customer: CustomerProfile | None,
               customer_id: str | None, *, new_customer: bool, new_visit: bool) -> list[Op]:
        """What one applied event does (the profiles as it left them). ``new_visit``: a return
        visit began (it converts, as a purchase does)."""
        index = self._index()
        if not index:
            return []
        ops: list[Op] = []
        if event.type == "purchase" or new_visit:
            revenue = event.order_revenue() if event.type == "purchase" else 0.0
            # A message reached the person as the cookie or as the customer it has logged in as since.
            for person in dict.fromkeys([customer_id or event.visitor_id, event.visitor_id]):
                ops.append(Op("convert", person, event.ts, revenue=revenue))
        seen: Seen | None = None
        noted: set[tuple[str, bool]] = set()
        for kind in interested(event.type):
            for tid, trigger in index.get(kind, ()):
                module = KINDS[kind]
                who = member(tid, module.SCOPE, event.visitor_id, customer_id)
                if who is None:
                    continue
                seen = seen or Seen(event, visitor, customer, customer_id, new_customer, self._lookup,
                                    self._shop_model)
                decision = module.on_event(trigger, seen)
                if decision is None:
                    continue
                if isinstance(decision, Noted):
                    if (decision.item_id, decision.carted) not in noted and event.ts >= self._clock() - self._viewers[0]:
                        noted.add((decision.item_id, decision.carted))
                        ops.append(Op("note", watcher_member(event.visitor_id, customer_id), event.ts,
                                      {"i": decision.item_id, "c": decision.carted}))
                elif isinstance(decision, Moved):
                    if decision.due < self._clock() - self._late_s:  # a replay: record, do not fire
                        decision = Moved(decision.value, (), decision.due)
                    data = {"t": tid, "v": event.visitor_id, "c": customer_id, "armed": event.ts, **decision.data}
                    ops.append(Op("moved", who, decision.due, data, moved=decision))
                elif not isinstance(decision, Arm):
                    ops.append(Op("cancel", who))
                elif decision.due >= self._clock() - self._late_s:
                    data = {"t": tid, "v": event.visitor_id, "c": customer_id, "armed": event.ts, **decision.data}
                    ops.append(Op("once" if decision.once else "arm", who, decision.due, data))
        return ops

    async def on_item_changed(self, old: Any, new: Any, watchers: Callable[[str], Awaitable[list[Watcher]]],
                              index: str = "watchers", *, at: float | None = None,
                              write: Callable[[list[Op]], Awaitable[None]] | None = None) -> int:
        """A catalogue write's entry point: ``old`` and ``new`` are the item before and after
        (``old`` None for a new item). Each enabled trigger whose kind has an
        ``on_item_changed(trigger, old, new) -> data | None`` is asked; when one fires, each of the
        item's watchers (``engine.profiles.preferences.watchers``) the kind ``reaches`` gets an
        occurrence, due ``after`` from now, one per (trigger, person, item): a second change before
        it is due moves it. Only the kinds fanning out through ``index`` (their ``INDEX``, default
        ``watchers``) are asked: ``watchers`` is that index's lookup. The number armed. ``at``: when
        the change was written (the occurrences' ``armed``, so their idempotency keys do not depend
        on when this runs); ``write``: how the arms are written (``engine.triggers.catalogue``
        commits them with the change's removal from its outbox)."""
        ops: list[Op] = []
        people: list[Watcher] | None = None
        now = self._clock() if at is None else at
        for kind, triggers in self._index().items():
            module = KINDS[kind]
            react = getattr(module, "on_item_changed", None) if getattr(module, "INDEX", "watchers") == index else None
            for tid, trigger in triggers if react is not None else ():
                data = react(trigger, old, new)
                if data is None:
                    continue
                people = await watchers(new.item_id) if people is None else people
                for watcher in people:
                    if not module.reaches(trigger, data, watcher):
                        continue
                    who, ident = watcher.person.split(":", 1)
                    visitor_id, customer_id = (ident, None) if who == "v" else (None, ident)
                    ops.append(Op("arm", f"{tid}|{watcher.person}|{new.item_id}", now + getattr(trigger, "after_s", 0),
                                  {"t": tid, "v": visitor_id, "c": customer_id, "armed": now,
                                   "item_id": new.item_id, **data}))
        if ops:
            await (write or self.write)(ops)
        return len(ops)

    async def write(self, ops: list[Op]) -> None:
        """One pipeline for a batch; a failure is logged, not raised: the events are applied
        already, and applying them again would not decide anything again (duplicates)."""
        try:
            if self._names.cluster:
                await self._write_cluster(ops)
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for op in ops:
                    if op.kind == "arm":
                        self.queue.put(pipe, op.member, op.due, op.data or {})
                    elif op.kind == "cancel":
                        self.queue.cancel(pipe, op.member)
                    elif op.kind == "moved" and op.moved is not None:
                        tid, person = op.member.split("|", 1)
                        await self._moved(keys=[self.queue.due_key, self.queue.data_key,
                                                store_keys.trigger_tiers(person.split(":", 1)[1])],
                                          args=[op.member, op.due, orjson.dumps(op.data), tid, op.moved.value,
                                                self._state_ttl_s, *op.moved.fires_from], client=pipe)
                    elif op.kind == "note" and op.data is not None:
                        await self._noter.queue(pipe, op.member, op.data["i"], op.data["c"], op.due)
                    elif op.kind == "once":
                        await self._once(keys=[self.queue.due_key, self.queue.data_key, self._names.once],
                                   args=[op.member, op.member, op.due, orjson.dumps(op.data)], client=pipe)
                    else:
                        await self._convert(keys=[store_keys.trigger_touches(op.member)],
                                            args=[op.due, op.revenue, op.member, self._names.prefix], client=pipe)
                await pipe.execute()
        except RedisError as exc:
            log.warning("%d trigger updates lost (%s: %s)", len(ops), type(exc).__name__, exc)

    async def _write_cluster(self, ops: list[Op]) -> None:
        """``write`` on a cluster: first each person's steps (in order per person, people at once),
        then the ``{tg}`` writes they lead to, in the batch's order, as one transaction."""
        names = self._names
        found = await self._person_steps(ops)
        async with self._redis.pipeline(transaction=True) as pipe:
            for n, op in enumerate(ops):
                if op.kind == "arm":
                    self.queue.put(pipe, op.member, op.due, op.data or {})
                elif op.kind == "cancel":
                    self.queue.cancel(pipe, op.member)
                elif op.kind == "moved" and op.moved is not None:
                    old = found[n]
                    old = old.decode() if isinstance(old, bytes) else old
                    if old and old != op.moved.value and old in op.moved.fires_from:
                        self.queue.put(pipe, op.member, op.due, {**(op.data or {}), "from": old})
                elif op.kind == "once":
                    await cluster.call(self._once, [self.queue.due_key, self.queue.data_key, names.once],
                                       [op.member, op.member, op.due, orjson.dumps(op.data)], pipe)
                elif op.kind == "convert":
                    for tid, touch in (found[n] or {}).items():
                        arm, ts, window = touch.decode().split("|")
                        if float(ts) <= op.due <= float(ts) + float(window):
                            pipe.sadd(names.converted(tid.decode(), arm), op.member)
                            if op.revenue > 0:
                                pipe.hincrbyfloat(names.revenue(tid.decode(), arm), op.member, op.revenue)
            await pipe.execute()

    async def _person_steps(self, ops: list[Op]) -> dict[int, Any]:
        """The steps in a person's own slot, by op index: a value tier's swap (the tier recorded
        before), a conversion's touches, a view's count; then the counted views' index entries.
        Each is one pipeline across the cluster's nodes, which keeps a slot's commands in order."""
        stepped: list[int] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for n, op in enumerate(ops):
                if op.kind == "moved" and op.moved is not None:
                    tid, person = op.member.split("|", 1)
                    await cluster.call(self._swap, [store_keys.trigger_tiers(person.split(":", 1)[1])],
                                       [tid, op.moved.value, self._state_ttl_s], pipe)
                elif op.kind == "note" and op.data is not None:
                    await self._noter.count(pipe, op.member, op.data["i"], op.data["c"])
                elif op.kind == "convert":
                    pipe.hgetall(store_keys.trigger_touches(op.member))
                else:
                    continue
                stepped.append(n)
            replies = await pipe.execute() if stepped else []
        found = dict(zip(stepped, replies))
        views = [n for n in stepped if ops[n].kind == "note" and found[n]]
        if views:
            async with self._redis.pipeline(transaction=False) as pipe:
                for n in views:
                    op = ops[n]
                    await self._noter.index(pipe, op.member, (op.data or {})["i"], op.due)
                await pipe.execute()
        return found
