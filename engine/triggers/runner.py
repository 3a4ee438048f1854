"""The background work of the triggers: due occurrences -> decisions -> documents -> webhooks.

``run_due`` claims what is due (``engine.triggers.queue``), reads the person again and decides
(``engine.triggers.suppress``): consent is checked here, at the due time, not only when the
occurrence was armed. A decision is written in one transaction with the occurrence's removal, so
an occurrence yields one document, whichever process claims it and however often it restarts.
``post_due`` posts the documents to the webhook, backing off and dead-lettering. ``clock`` is
injectable: tests move time instead of waiting.

On a Redis Cluster the decision's transaction holds only ``{tg}`` keys (``keys.names``); the
person's own keys are written before it, each in its own slot: the send in their caps
(``engine.triggers.caps``, as on one Redis), then their touch (``tg:t:``, the attribution). A crash
between those and the transaction leaves the occurrence claimed: claimed again after the lease, it
finds its send recorded under the same idempotency key (not counted twice), rewrites the touch, and
the transaction writes the document once. A crash after the transaction has nothing left to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from redis.asyncio import Redis

from engine import tasks
from engine.catalog import Catalogue
from engine.merch import templates
from engine.merch.blocks import Person, eligible, template_values
from engine.merch.live import RulesSnapshot
from engine.profiles import preferences
from engine.profiles.store import load_profiles
from engine.ranking.request import RecoRequest
from engine.store import cluster
from engine.store import keys as store_keys
from engine.triggers import keys, suppress, webhook
from engine.triggers.caps import Caps
from engine.triggers.catalogue import CatalogueChanges
from engine.triggers.kinds import KINDS
from engine.triggers.outbound import Publisher, TopicOutbox
from engine.triggers.queue import Queue

log = logging.getLogger(__name__)
SENDS_KEPT_S = 35 * 86400  # longest cap window honoured (a person's send log expires after it)
CONCURRENT_POSTS = 16  # a few kept-alive connections: a pool of hundreds costs more than it brings


@dataclass(frozen=True)
class RunnerConfig:
    webhook_url: str | None = None
    webhook_secret: str = ""
    timeout_s: float = 5.0
    attempts: int = 8
    backoff_s: float = 5.0
    max_backoff_s: float = 3600.0
    poll_s: float = 1.0
    batch: int = 200
    lease_s: float = 120.0
    timezone: str = "UTC"
    kept: int = 100_000  # documents kept in each stream
    consent_required: bool = False
    session_timeout_s: float = 1800.0


def _declares(audience: Any) -> bool:
    return audience is not None and bool(audience.declared_categories or audience.declared_brands)


def idempotency_key(member: str, armed: float) -> str:
    """The occurrence (trigger, person, the event that armed it): stable across claims."""
    return hashlib.blake2b(f"{member}|{armed}".encode(), digest_size=12).hexdigest()


class TriggerRunner:
    def __init__(self, redis: Redis, rules: Callable[[], RulesSnapshot], catalogue: Callable[[], Catalogue],
                 config: RunnerConfig, *, recommender: Any = None, clock: Callable[[], float] = time.time,
                 changes: CatalogueChanges | None = None, publisher: Publisher | None = None) -> None:
        """``recommender``: ``engine.recommend.Recommender`` (payload items from a placement).
        ``changes``: catalogue changes to fan out first; ``publisher``: the outbound topic's."""
        self.redis = redis
        self.rules = rules
        self.catalogue = catalogue
        self.config = config
        self.recommender = recommender
        self.clock = clock
        self.tz = ZoneInfo(config.timezone)
        self.names = keys.names(cluster.on_cluster(redis))
        self.occurrences = Queue(redis, self.names.occurrences)
        self.outbox = Queue(redis, self.names.outbox)
        self.changes = changes
        self.topic = TopicOutbox(redis, publisher, config.webhook_secret) if publisher is not None else None
        self.caps = Caps(redis, SENDS_KEPT_S)
        self._mget = redis.mget_nonatomic if self.names.cluster else redis.mget
        self.http = httpx.AsyncClient(timeout=config.timeout_s, limits=httpx.Limits(
            max_connections=CONCURRENT_POSTS, max_keepalive_connections=CONCURRENT_POSTS))
        self._posts = asyncio.Semaphore(CONCURRENT_POSTS)
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = tasks.start("triggers", tasks.every(self.config.poll_s, self.tick),
                                 first_backoff_s=self.config.poll_s)

    async def stop(self) -> None:
        if self._task is not None:
            await tasks.stop(self._task)
        await self.http.aclose()

    async def tick(self) -> tuple[int, int]:
        """Everything due now: (occurrences decided, webhook posts tried and records produced)."""
        decided = posted = 0
        if self.changes is not None:
            await self.changes.drain(self.clock())
        while (n := await self.run_due()) > 0:
            decided += n
            if n < self.config.batch:
                break
        if self.config.webhook_url:
            while (n := await self.post_due()) > 0:
                posted += n
                if n < self.config.batch:
                    break
        if self.topic is not None:
            while (n := await self.topic.publish_due(self.clock(), self.config.batch)) > 0:
                posted += n
                if n < self.config.batch:
                    break
        return decided, posted

    # ---------------------------------------------------------------- occurrences

    async def run_due(self) -> int:
        now = self.clock()
        claimed = await self.occurrences.claim(now, self.config.lease_s, self.config.batch)
        for member, raw in claimed:
            await self._decide(member, raw, now)
        return len(claimed)

    async def _decide(self, member: str, raw: bytes, now: float) -> None:
        data = orjson.loads(raw)
        snap = self.rules()
        tid = data["t"]
        trigger = snap.rules.triggers.get(tid)
        async with self.redis.pipeline(transaction=True) as pipe:
            await self.occurrences.done(pipe, member, raw)
            outcome = await self._outcome(pipe, member, data, trigger, snap, now)
            if outcome:
                pipe.hincrby(self.names.stats(tid), outcome, 1)
            pipe.sadd(self.names.ids, tid)  # it has counters now
            await pipe.execute()

    async def _outcome(self, pipe: Any, member: str, data: dict[str, Any], trigger: Any, snap: RulesSnapshot,
                       now: float) -> str | None:
        """Queue the decision's writes on ``pipe``; the counter it adds to."""
        if trigger is None or not trigger.enabled:
            return None  # removed from the rules since it was armed
        tid, vid, cid = data["t"], data["v"], data.get("c")
        visitor, customer, cid = await load_profiles(self._mget, vid, cid)
        person_id = cid or vid
        declared: tuple[list[str], list[str]] = ([], [])
        if snap.segments.needs_declared or _declares(trigger.audience):
            owner = preferences.Owner("c", cid) if cid else preferences.Owner("v", vid)
            declared = preferences.interests_of([await preferences.load(self.redis, owner)])
        scorer = getattr(self.recommender, "scorer", None)
        person = Person(visitor, customer, cid, now, self.config.session_timeout_s, snap.segments, scorer, declared)
        if not suppress.may_contact(visitor, customer, trigger.channel, self.config.consent_required):
            return f"suppressed:{suppress.NO_CONSENT}"
        if not KINDS[trigger.kind].still_due(trigger, person, data):
            return "cancelled"
        if not eligible(trigger.audience, person):
            return "not_in_audience"
        key = idempotency_key(member, data.get("armed", 0))
        until = suppress.quiet_until(trigger.quiet_hours, now, self.tz)
        arm = "control" if suppress.held_out(tid, trigger, person_id) else "sent"
        limits = suppress.limits(tid, trigger, snap.rules.pressure, customer.traits if customer else {})
        if await self.caps.check(person_id, f"{trigger.channel}|{tid}|{key}", limits, now,
                                 record=until is None and arm == "sent"):
            return f"suppressed:{suppress.CAPPED}"
        if until is not None:
            self.occurrences.again(pipe, member, until, data)
            return f"deferred:{suppress.QUIET_HOURS}"
        pipe.sadd(self.names.people(tid, arm), person_id)
        touches = store_keys.trigger_touches(person_id)
        touch, kept = f"{arm}|{now}|{trigger.attribution_s}", max(t.attribution_s for t in snap.rules.triggers.values())
        if self.names.cluster:  # its own slot: written before the transaction
            async with self.redis.pipeline(transaction=True) as own:
                own.hset(touches, tid, touch)
                own.expire(touches, kept)
                await own.execute()
        else:
            pipe.hset(touches, tid, touch)
            pipe.expire(touches, kept)
        pipe.hincrby(self.names.stats(tid), f"{arm}:deliveries", 1)
        if arm == "control":
            held = {"id": key, "trigger": tid, "visitor_id": vid, "customer_id": cid, "at": now}
            pipe.xadd(self.names.held_out, {"doc": orjson.dumps(held)}, maxlen=self.config.kept, approximate=True)
            return f"suppressed:{suppress.CONTROL_GROUP}"
        doc = await self._document(key, tid, trigger, person, vid, data, snap, now)
        body = orjson.dumps(doc)
        pipe.xadd(self.names.deliveries, {"doc": body}, maxlen=self.config.kept, approximate=True)
        if self.config.webhook_url:
            self.outbox.put(pipe, key, now, {"doc": doc, "attempts": 0})
        if self.topic is not None:
            self.topic.put(pipe, doc, now)
        return None

    async def _document(self, key: str, tid: str, trigger: Any, person: Person, vid: str, data: dict[str, Any],
                        snap: RulesSnapshot, now: float) -> dict[str, Any]:
        values = template_values(person, self.catalogue(), snap)
        defaults = snap.rules.template_defaults
        payload: dict[str, Any] = {
            name: templates.parse(getattr(trigger.payload, name)).render(values, defaults, as_html=False)
            for name in ("title", "body")}
        if trigger.payload.link:
            payload["link"] = trigger.payload.link
        strip = trigger.payload.recommendations
        if strip is not None and self.recommender is not None:
            reco = await self.recommender.recommend(RecoRequest(strip.placement, vid, person.customer_id, n=strip.n),
                                                    now=now)
            payload["items"] = [{"item_id": i["item_id"], "reason": i["reason"]} for i in reco["items"]]
            payload["recommendation_id"] = reco["recommendation_id"]
        extra = {k: v for k, v in data.items() if k not in ("t", "v", "c", "armed")}
        return {"id": key, "trigger": tid, "kind": trigger.kind, "channel": trigger.channel, "visitor_id": vid,
                "customer_id": person.customer_id, "occurred_at": data.get("armed"), "sent_at": now,
                "context": extra, "payload": payload}

    # ---------------------------------------------------------------- webhooks

    async def post_due(self) -> int:
        now = self.clock()
        claimed = await self.outbox.claim(now, self.config.timeout_s * 2 + 5, self.config.batch)
        if not claimed:
            return 0
        entries = [(member, raw, orjson.loads(raw)) for member, raw in claimed]

        async def post(member: str, doc: dict[str, Any]) -> str | None:
            async with self._posts:  # the timeout then covers the post, not a wait for a connection
                return await webhook.post(self.http, self.config.webhook_url or "", self.config.webhook_secret,
                                          orjson.dumps(doc), member)

        errors = await asyncio.gather(*(post(member, entry["doc"]) for member, _, entry in entries))
        async with self.redis.pipeline(transaction=True) as pipe:
            for (member, raw, entry), error in zip(entries, errors):
                tid = entry["doc"]["trigger"]
                if error is None:
                    await self.outbox.done(pipe, member, raw)
                    pipe.hincrby(self.names.stats(tid), "webhook:delivered", 1)
                    continue
                attempts = entry["attempts"] + 1
                if attempts >= self.config.attempts:
                    await self.outbox.done(pipe, member, raw)
                    pipe.lpush(self.names.dead, orjson.dumps({**entry, "attempts": attempts, "error": error, "at": now}))
                    pipe.ltrim(self.names.dead, 0, self.config.kept - 1)
                    pipe.hincrby(self.names.stats(tid), "webhook:dead_letter", 1)
                    log.warning("webhook document %s dead-lettered after %d attempts (%s)", member, attempts, error)
                else:
                    wait = webhook.backoff(attempts, self.config.backoff_s, self.config.max_backoff_s)
                    self.outbox.again(pipe, member, now + wait, {**entry, "attempts": attempts, "error": error})
                    pipe.hincrby(self.names.stats(tid), "webhook:retried", 1)
            await pipe.execute()
        return len(claimed)
