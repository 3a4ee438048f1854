"""Wiring: one ``Engine`` holds the Redis client, caches, model and appliers of a process.

The API and the faust workers both build an Engine from the same Settings, so the embedded and
the scale-out modes run exactly the same engine code.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from engine import tasks
from engine.customers import logins, merge, scores
from engine.customers.segment_counts import SegmentCounts
from engine.ingest.apply import EventApplier, transient
from engine.merch.blocks import BlockPicker
from engine.catalog import Catalogue, CatalogueCache
from engine.catalog import content
from engine.ranking.sessions import LiveSessions
from engine.ranking.model import ModelHolder, ServedModel
from engine.profiles.shapes import ProfileConfig
from engine.profiles.store import KeyReader
from engine.paging import Pager
from engine.recommend import Recommender
from engine.store import cluster
from engine.ingest.cluster import ClusterApplier
from engine.store.cluster_reads import ClusterReader
from engine.store.connect import connect_to
from engine.store.latency import RedisLatency
from engine.store.reads import PipelinedReader
from engine.merch.live import RulesHolder, RulesSnapshot
from engine.settings import Settings
from engine.ranking.trending import TrendingClock, TrendingReader
from engine.triggers.catalogue import CatalogueChanges
from engine.triggers.hook import TriggerHook
from engine.triggers.outbound import Publisher
from engine.triggers.runner import RunnerConfig, TriggerRunner
from models import customer_value

log = logging.getLogger(__name__)
YOUNG_GC_THRESHOLD = 50_000


def profile_config(settings: Settings) -> ProfileConfig:
    return ProfileConfig(session_timeout_s=settings.session_timeout_s,
                         affinity_half_life_s=settings.affinity_half_life_s,
                         weights=dict(settings.event_weights), consent_required=settings.consent_required)


class Engine:
    def __init__(self, settings: Settings, redis_url: str, *, serve_models: bool = True, triggers: bool = True,
                 observe_stored_list: Callable[[bool], None] | None = None) -> None:
        """``serve_models=False`` (``vitrine replay``) keeps the catalogue and rules fresh but loads
        no model, so applying events stores no for-you lists. ``triggers=False`` (``vitrine replay
        --reset``): applying events leaves the triggers' keys alone, since a rebuild applies again
        events whose occurrences, conversions and view counts were recorded the first time, and kept."""
        self.settings = settings
        self.serve_models = serve_models
        on_cluster = settings.redis_cluster
        if on_cluster:
            log.info(cluster.announcement())
        self.redis = connect_to(redis_url, cluster=on_cluster, timeout_s=settings.redis_socket_timeout_s)
        # The admin and preferences routes' profile reads (engine.profiles.store.KeyReader): a
        # visitor's and a customer's keys, one MGET per slot on a cluster.
        self.read_keys: KeyReader = self.redis.mget_nonatomic if on_cluster else self.redis.mget
        self.redis_latency = RedisLatency()  # exported by engine.observe
        self.catalogue = CatalogueCache(self.redis, prepare=lambda c: self._prepare(self.models.current, c))
        self.models = ModelHolder(settings.models_dir, prepare=lambda m: self._prepare(m, self.catalogue.current))
        self.trending_clock = TrendingClock(settings.trending_half_life_s)
        self.trending = TrendingReader(self.redis, self.trending_clock)
        self.live_sessions = (LiveSessions(settings.event_weights, settings.session_timeout_s, settings.live_sessions)
                              if serve_models and settings.live_sessions and not settings.consent_required else None)
        self.trigger_hook = TriggerHook(self.redis, lambda: self.rules.current.rules.triggers, self.catalogue.info,
                                        shop_model=lambda: customer_value.load(settings.models_dir),
                                        state_ttl_s=settings.customer_ttl_s,
                                        viewers_ttl_s=settings.trigger_viewers_ttl_s, viewers_max=settings.watchers_max)
        self.catalogue_changes = CatalogueChanges(self.redis, self.trigger_hook,
                                                  lambda: self.rules.current.rules.triggers)
        applier_options: dict[str, Any] = dict(
            visitor_ttl_s=settings.visitor_ttl_s,
            bounce_ttl_s=settings.visitor_bounce_ttl_s,
            customer_ttl_s=settings.customer_ttl_s,
            dedup_window_s=settings.dedup_window_s,
            trending_clock=self.trending_clock,
            exposure_retention_s=settings.exposure_retention_s,
            attribution_window_s=settings.attribution_window_s,
            known_arm=lambda experiment, arm: self.rules.current.can_assign(experiment, arm),
            known_item=self._item_exists,
            on_applied=self._lists_changed if serve_models and settings.store_lists else None,
            observe=self.live_sessions.observe if self.live_sessions is not None else None,
            latency=self.redis_latency,
        )
        self.applier: EventApplier
        hook = self.trigger_hook if triggers else None
        if on_cluster:
            self.applier = ClusterApplier(self.redis, self.catalogue.info, profile_config(settings),
                                          logins=functools.partial(logins.after_apply, self.redis, settings),
                                          replicas=settings.redis_cluster_replicas, triggers=hook,
                                          timeout_s=settings.redis_socket_timeout_s, **applier_options)
        else:
            self.applier = EventApplier(self.redis, self.catalogue.info, profile_config(settings),
                                        logins=functools.partial(logins.after_apply, self.redis, settings),
                                        triggers=hook, **applier_options)
        self.rules = RulesHolder(settings.rules_file, self._item_exists, settings.exposure_retention_s,
                                 prepare=self._prepare_rules)
        # The request path's reads, cheaper than redis-py's.
        self.reads: PipelinedReader | ClusterReader = (
            ClusterReader(self.redis, self.redis_latency.histogram("read")) if on_cluster
            else PipelinedReader(self.redis, self.redis_latency.histogram("read")))
        self.recommender = Recommender(self.reads, settings, self.models, self.catalogue, self.trending,
                                       self.rules, lists_redis=self.redis, observe_stored_list=observe_stored_list)
        self.recommender.scorer = scores.scorer(settings.models_dir)
        self.segment_counts = SegmentCounts(self.redis, settings.segment_sample, settings.segment_counts_ttl_s)
        self.precomputer = self.recommender.precomputer
        self.pager = Pager(self.recommender, self.redis, settings.session_timeout_s,
                           settings.redis_timeout_s)
        self.blocks = BlockPicker(self.recommender, settings.session_timeout_s, settings.consent_required)
        poll_s = settings.model_poll_s
        self._streaks = {name: tasks.FailureStreak(name, first_backoff_s=poll_s, max_backoff_s=max(poll_s, 30.0),
                                                   expected=transient)
                         for name in ("catalogue-poll", "rules-poll", "model-poll")}
        self._pollers: list[asyncio.Task[Any]] = []
        self._frozen: tuple[object, ...] = ()

    async def start(self) -> None:
        """Load what exists now, then poll each source in a supervised task of its own. A missing
        model, an unreachable Redis or a broken rules file is not fatal: the process serves what
        it has and keeps trying."""
        await self.refresh(first=True)
        interval = self.settings.model_poll_s
        self._pollers = [asyncio.create_task(tasks.supervise(tasks.every(interval, self._polled(action)), streak,
                                                             first_pause_s=interval), name=f"vitrine-{streak.name}")
                         for streak, action in self._sources(first=False)]
        if self.live_sessions is not None:
            every = self.settings.live_sessions_refresh_s
            streak = tasks.FailureStreak("live-sessions", first_backoff_s=every, max_backoff_s=every)
            self._pollers.append(asyncio.create_task(tasks.supervise(tasks.every(every, self._add_live_sessions),
                                                                     streak, first_pause_s=every),
                                                     name="vitrine-live-sessions"))
        if self.settings.redis_cluster:
            every = self.settings.merge_sweep_s
            self._pollers.append(tasks.start("merge-sweep", tasks.every(every, self._sweep_merges), first_pause_s=every,
                                             first_backoff_s=every, max_backoff_s=every, expected=transient))

    async def _sweep_merges(self) -> None:
        assert isinstance(self.redis, RedisCluster)
        await merge.sweep(self.redis, self.settings)

    async def _add_live_sessions(self) -> None:
        assert self.live_sessions is not None
        await asyncio.to_thread(self.live_sessions.refresh, self.models.current)

    def _sources(self, first: bool) -> list[tuple[tasks.FailureStreak, Callable[[], Awaitable[object]]]]:
        """What is polled, in the order a start loads it: the rules are checked against the
        catalogue, and compiled for the model."""
        sources = [(self._streaks["catalogue-poll"], self.catalogue.refresh),
                   (self._streaks["rules-poll"], functools.partial(self._refresh_rules, force=first))]
        if self.serve_models:
            sources.append((self._streaks["model-poll"], self.models.reload))
        return sources

    async def refresh(self, first: bool = False) -> None:
        """Every source once, each failure contained (counted and logged as the pollers' are)."""
        for streak, action in self._sources(first):
            try:
                await action()
            except Exception as exc:  # noqa: BLE001 - serve the last good version, the poller retries
                streak.failed(exc)
            else:
                streak.succeeded()
        if self.serve_models:
            self._freeze_heap()

    async def _refresh_rules(self, force: bool = False) -> None:
        # Workers too: experiment counters count only its arms. At start-up there is no
        # half-written file to wait out.
        await asyncio.to_thread(self.rules.reload, force=force)
        if self.serve_models:  # campaigns that started since the last tick
            await asyncio.to_thread(self.rules.current.warm, self.models.current, self.catalogue.current,
                                    time.time())

    def _polled(self, action: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def poll() -> None:
            await action()
            if self.serve_models:
                self._freeze_heap()
        return poll

    def _freeze_heap(self) -> None:
        """Move the long-lived objects (model, catalogue, rules: ~10^5 of them) out of the garbage
        collector's sight. Otherwise every full collection walks them all, a pause that shows up
        as the p99 of whatever requests were in flight. Redone (one pause) per swap, so the
        previous version's objects are not kept frozen."""
        live = (self.models.current, self.catalogue.current, self.rules.current)
        if all(a is b for a, b in zip(live, self._frozen)) and self._frozen:
            return
        # A request allocates hundreds of short-lived objects: at the default threshold (700) the
        # youngest generation is collected every request or two, a visible share of its CPU.
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._frozen = live

    def _prepare(self, model: ServedModel | None, catalogue: Catalogue) -> None:
        """Run in a thread before a new model or catalogue goes live: what the first requests
        after the swap would otherwise build on the event loop (catalogue-aligned arrays, the
        rules' per-version precomputation)."""
        if not self.serve_models:
            return
        if model is not None:
            model.view(catalogue)
        if catalogue.items:
            content.for_catalogue(catalogue)
        self.rules.current.warm(model, catalogue, time.time())

    def _prepare_rules(self, snapshot: RulesSnapshot) -> None:
        """Run in a thread before new rules go live: compile them for the served model."""
        if self.serve_models:
            snapshot.warm(self.models.current, self.catalogue.current, time.time())

    def trigger_runner(self, clock: Callable[[], float] = time.time,
                       publisher: Publisher | None = None) -> TriggerRunner:
        """The triggers' background work (the API runs one per process; claims are atomic).
        ``publisher``: the outbound topic's producer (Kafka mode; the edge builds it)."""
        s = self.settings
        config = RunnerConfig(webhook_url=s.trigger_webhook_url,
                              webhook_secret=s.trigger_webhook_secret.get_secret_value() if s.trigger_webhook_secret
                              else "", timeout_s=s.trigger_webhook_timeout_s, attempts=s.trigger_webhook_attempts,
                              backoff_s=s.trigger_webhook_backoff_s, poll_s=s.trigger_poll_s, timezone=s.shop_timezone,
                              kept=s.trigger_kept, consent_required=s.consent_required,
                              session_timeout_s=s.session_timeout_s)
        return TriggerRunner(self.redis, lambda: self.rules.current, lambda: self.catalogue.current, config,
                             recommender=self.recommender, clock=clock, changes=self.catalogue_changes,
                             publisher=publisher)

    def _lists_changed(self, visitor_ids: list[str]) -> None:
        self.recommender.lists_changed(visitor_ids)

    def _item_exists(self, item_id: str) -> bool:
        """An item a pin names must be in the catalogue (if there is one), and so must an item that
        enters the trending counters."""
        return self.catalogue.current.may_name(item_id)

    async def stop(self) -> None:
        for poller in self._pollers:
            await tasks.stop(poller)
        if self.precomputer is not None:
            await self.precomputer.aclose()
        await self.reads.aclose()
        if isinstance(self.applier, ClusterApplier):
            await self.applier.aclose()
        await self.redis.aclose()
        pool = getattr(self.redis, "connection_pool", None)
        if isinstance(pool, SentinelConnectionPool):  # the clients that ask the sentinels
            for client in pool.sentinel_manager.sentinels:
                await client.aclose()
