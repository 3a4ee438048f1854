"""Recommendations for a placement: profile + model + catalogue -> ranked, explained items.

One Redis read (two when only the cookie knows the customer), then pure scenario functions in the
placement's fallback order until the candidate pool is full, then the merchandiser's rules
(``engine.merch.stage``) cut it to ``n``. If Redis is slow or down, the list is built
from the model alone and marked ``degraded``: a shop page must never wait on us.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.store import keys

from engine.ranking import stored
from engine.ranking.stored import NEW_SPARE, Precomputer
from engine.profiles.affinity import affinity_owner, relative
from engine.store.breaker import Breaker
from engine.catalog import Catalogue, CatalogueCache
from engine.merch.experiments import NO_EXPERIMENT, Arm
from engine.merch.exposure import Exposure, item_hash, minute
from engine.ranking.model import ModelHolder, ServedModel
from engine.profiles.store import Loaded, load_profiles_with
from engine.profiles.consent import last_withdrawal, withdrawn
from engine.profiles.preferences import Declared, interests_of
from engine.ranking.declared import lift
from engine.profiles.shapes import VisitorProfile
from engine.store.cluster_reads import ClusterReader
from engine.store.reads import PipelinedReader
from engine.merch.live import RulesHolder, RulesSnapshot
from engine.merch.segments import Scorer, members
from engine.merch.stage import Visitor as RulesVisitor
from engine.merch.stage import apply_rules, pool_size
from engine.ranking.filters import ItemFilter, allowed
from engine.ranking.request import Read, RecoRequest
from engine.ranking.rerank import rerank
from engine.ranking.scenarios import (SCENARIOS, Context, Pick, base_exclusions, exploration_window, explore,
                                      new_for_person, stored_new)
from engine.settings import Settings
from engine.ranking.trending import TrendingReader

log = logging.getLogger(__name__)


DEGRADED_CAUSES = ("breaker_open", "timeout", "redis_error", "no_model")


class UnknownPlacement(ValueError):
    pass



class Recommender:
    def __init__(self, reader: PipelinedReader | ClusterReader, settings: Settings, models: ModelHolder,
                 catalogue: CatalogueCache, trending: TrendingReader, rules: RulesHolder | None = None, *,
                 lists_redis: Redis | None = None, observe_stored_list: Callable[[bool], None] | None = None) -> None:
        """``lists_redis`` (a client that may write) stores for-you lists in the background when
        ``settings.store_lists``; ``observe_stored_list`` is told, for each personal request that
        could use a stored list, whether one matched (the API counts them for /metrics)."""
        self._reader = reader
        self._settings = settings
        self.models = models
        self.catalogue = catalogue
        self._trending = trending
        self.rules = rules or RulesHolder(None)
        self.scorer: Scorer | None = None  # customers' scores for segments that ask (engine.runtime sets it)
        self._degraded = 0
        self.degraded_total = 0  # answers degraded since start (the console's operations page)
        # Why, since start: breaker_open, timeout, redis_error (the answer says ``degraded``) and
        # no_model (no model served yet: popularity and rules only).
        self.degraded_by_cause: dict[str, int] = dict.fromkeys(DEGRADED_CAUSES, 0)
        self._degraded_logged_at = float("-inf")
        # Shared by every request-path read (recommendations, blocks, previews): one timeout makes
        # the next requests answer degraded at once instead of each waiting out its budget.
        self.breaker = Breaker(settings.redis_breaker_open_s, settings.redis_timeout_s, settings.redis_breaker_failures)
        self.observe_stored_list = observe_stored_list or (lambda matched: None)
        # Lists expire with the visit they were computed in: after it they can no longer match.
        self.precomputer = (Precomputer(self, lists_redis, settings.session_timeout_s)
                            if lists_redis is not None else None)
        # What shapes a for-you list besides the person, model and catalogue (engine.ranking.stored).
        self._list_config = (f"{settings.exclude_seen:d}{settings.exclude_purchased:d}"
                             f"{settings.consent_required:d}{settings.session_timeout_s}|{settings.new_item_share}")

    def lists_changed(self, visitor_ids: list[str]) -> None:
        """Whose for-you list no longer matches (their events were just applied; a request found it
        missing or stale after a new model, an item back in stock, the visit over): store it again
        in the background, so that only their next request scores, not every one until their next
        event."""
        if self.precomputer is not None and self.models.current is not None:
            self.precomputer.mark(visitor_ids)

    def check_placement(self, placement: str, snapshot: RulesSnapshot | None = None) -> tuple[str, ...]:
        placements = (snapshot or self.rules.current).placements
        chain = placements.get(placement)
        if chain is None:
            raise UnknownPlacement(
                f"unknown placement {placement!r}; known: {', '.join(sorted(placements))}")
        return chain

    async def read(self, req: RecoRequest, needs_trending: bool, extra_keys: tuple[str, ...] = (),
                   preferences: bool = False) -> Read:
        """Profile, extra keys (and ``preferences``: declared ones) and trending within the time
        budget; on failure, or while the breaker is open after one (``engine.store.breaker``), empty
        ones and degraded=True."""
        now = asyncio.get_running_loop().time()
        if self.breaker.allow(now):
            deadline = now + self._settings.redis_timeout_s
            try:
                loaded = await load_profiles_with(lambda keys_: self._reader.mget(keys_, deadline), req.visitor_id,
                                                  req.customer_id, extra_keys, preferences)
                trend = self._trending.cached(time.time()) if needs_trending else []
                if trend is None:
                    async with asyncio.timeout_at(deadline):
                        trend = await self._trending.top()
                self.breaker.succeeded()
                return Read(loaded, trend, False)
            except (RedisError, OSError, TimeoutError) as exc:
                self.breaker.failed(asyncio.get_running_loop().time())
                timeout = isinstance(exc, (TimeoutError, RedisTimeoutError))
                self._log_degraded(type(exc).__name__, "timeout" if timeout else "redis_error")
        else:
            self._log_degraded("skipped while the breaker is open", "breaker_open")
        return Read(Loaded(req.customer_id, [None] * len(extra_keys)), [], True)

    def _log_degraded(self, why: str, cause: str) -> None:
        self._degraded += 1
        self.degraded_total += 1
        self.degraded_by_cause[cause] += 1
        now = time.monotonic()
        if now - self._degraded_logged_at > 10:  # an outage must not flood the log
            log.warning("redis unavailable (%s): %d recommendations served from the model alone "
                        "since the last warning", why, self._degraded)
            self._degraded, self._degraded_logged_at = 0, now

    def _context(self, visitor_id: str | None, loaded: Loaded, personal: bool, model: ServedModel | None,
                 now: float, n: int, trending: list[tuple[str, float]], item_id: str | None = None,
                 category: str | None = None) -> Context:
        """What the scenarios see of a person. The control group, and whoever withdrew consent (or
        has not granted it where it is required), get what a first-time anonymous visitor gets: no
        profile, and no model row (the last training may predate the withdrawal)."""
        visitor, customer, customer_id = (loaded.visitor, loaded.customer, loaded.customer_id) if personal else (
            VisitorProfile(), None, None)
        # After a new grant, a model whose history was read before the person's last withdrawal
        # still holds what they did before it: its row for them waits for the next training.
        withdrew = last_withdrawal(visitor, customer)
        ctx = Context(
            visitor_id=visitor_id if personal else None,
            customer_id=customer_id,
            visitor=visitor,
            customer=customer,
            now=now,
            n=n,
            session_timeout_s=self._settings.session_timeout_s,
            item_id=item_id,
            category=category,
            exclude_purchased=self._excluded("exclude_purchased", model),
            exclude_seen=self._excluded("exclude_seen", model),
            new_item_share=self._settings.new_item_share,
            trending=trending,
            model_row=model is None or not withdrew or withdrew < model.read_at,
        )
        ctx.excluded = base_exclusions(ctx)
        return ctx

    def _excluded(self, flag: str, model: ServedModel | None) -> bool:
        """An exclusion flag: the model's choice (``vitrine train`` tunes it) unless the setting is
        pinned (set explicitly) or the model made none."""
        chosen = getattr(model, flag, None)
        if chosen is None or flag in self._settings.model_fields_set:
            return bool(getattr(self._settings, flag))
        return bool(chosen)

    def _stamp(self, model: ServedModel, catalogue: Catalogue, loaded: Loaded) -> bytes:
        return stored.digest(model, catalogue, self._list_config, loaded.customer_id,
                                  loaded.raw_visitor, loaded.raw_customer)

    async def for_you_list(self, visitor_id: str, n: int) -> bytes | None:
        """The visitor's for-you list as ``engine.ranking.stored`` stores it; None for whoever gets no
        personal list (no model, consent withdrawn or not granted)."""
        model = self.models.current
        if model is None:
            return None
        loaded = await load_profiles_with(self._reader.mget, visitor_id, None, ())
        if withdrawn(loaded.visitor, loaded.customer, self._settings.consent_required):
            return None
        catalogue = self.catalogue.current
        ctx = self._context(visitor_id, loaded, True, model, time.time(), n, [])
        ctx.new_item_share = 0.0  # the model's items; the new ones, kept apart, join them when served
        picks = SCENARIOS["for_you"](model, catalogue, ctx)
        # Every slot a served list may give to new items, and a few more for those going out of stock.
        slots = int(self._settings.new_item_share * n)
        keep = slots + NEW_SPARE if slots and model.view(catalogue).new_items else 0
        new = new_for_person(model, catalogue, ctx, keep) if keep else []
        visit = stored.Visit.of(ctx.visitor, ctx.now, ctx.session_timeout_s)
        return stored.encode(self._stamp(model, catalogue, loaded), visit, picks, len(picks) < n, model, new,
                             not keep or len(new) < keep, exploration_window(model, catalogue))

    async def recommend(self, req: RecoRequest, snapshot: RulesSnapshot | None = None,
                        now: float | None = None) -> dict[str, Any]:
        """The placement's list under ``snapshot`` (default: the live rules)."""
        snap = snapshot or self.rules.current
        self.check_placement(req.placement, snap)
        now = time.time() if now is None else now
        model = self.models.current
        if model is None:
            self.degraded_by_cause["no_model"] += 1
        catalogue = self.catalogue.current
        arm = snap.assign(req.visitor_id or req.customer_id, req.placement, now)
        eff = snap.effective(req.placement, arm, now, model, catalogue)
        gate = snap.gate(arm) if arm.experiment else None
        # An experiment for some segments: whether this person is in it is known after the read, so
        # the read serves both the arm and what they get outside it.
        outside = None
        if gate is not None:
            outside_arm = snap.assign(req.visitor_id or req.customer_id, req.placement, now, eligible=False)
            outside = (outside_arm, snap.effective(req.placement, outside_arm, now, model, catalogue))
        # What either set of rules needs (the same one twice without a gate).
        other = outside[1] if outside else eff
        repeats = arm.personalised and req.visitor_id and (eff.repetition or other.repetition) is not None
        extra = (keys.exposure(req.visitor_id),) if repeats and req.visitor_id else ()
        pool = pool_size(eff, req.n) if other is eff else max(pool_size(eff, req.n), pool_size(other, req.n))
        wants_list = (model is not None and arm.personalised and req.visitor_id is not None and gate is None
                      and "for_you" in eff.chain and pool <= stored.LIST_SIZE and self._settings.store_lists
                      and req.filter is None and not req.exclude)
        if wants_list:
            extra += (keys.for_you(req.visitor_id),)  # type: ignore[arg-type]
        boosts = self._settings.declared_boost > 0 and ("for_you" in eff.chain or "for_you" in other.chain)
        by_segment = gate is not None or eff.by_segment or other.by_segment
        declares = boosts or (by_segment and snap.segments.needs_declared)
        loaded, trend, degraded = await self.read(req, "trending" in eff.chain or "trending" in other.chain, extra,
                                                  declares)
        declared = interests_of([Declared.decode(r) for r in loaded.raw_preferences])
        kept = None
        if wants_list and not degraded:
            kept = stored.decode(loaded.extra[-1], self._stamp(model, catalogue, loaded), now,
                                        self._settings.session_timeout_s)
        if kept is not None and eff.chain[0] == "for_you" and not eff.has_rules and not any(declared):
            # The list as applying the person's last events left it: it only exists for whoever may
            # have one, so nothing else needs reading from their profile (engine.ranking.stored).
            view = model.view(catalogue)  # type: ignore[union-attr]
            picks = kept.serve(model.item_ids, view.available_flags, set(), pool)  # type: ignore[union-attr]
            slots = int(self._settings.new_item_share * pool)
            if picks and slots and view.new_items:  # as for_you explores
                new = stored_new(model, catalogue, kept, slots, catalogue.is_available)  # type: ignore[arg-type]
                picks = explore(picks, new, pool) if new is not None else None
            if picks is not None and len(picks) == pool:
                self.observe_stored_list(True)
                return self._response(req, snap, arm, model, picks, degraded=False)
        # A request whose profile could not be read is not personal either: without it, nobody can
        # tell whether the person withdrew.
        personal = (arm.personalised and not degraded
                    and not withdrawn(loaded.visitor, loaded.customer, self._settings.consent_required))
        segments: list[str] = []
        if personal and by_segment:
            segments = members(snap.segments, loaded.visitor, loaded.customer, now, self.scorer, declared)
        if outside is not None and not gate.admits(segments):  # type: ignore[union-attr]
            arm, eff = outside
        repetition = eff.repetition if personal and req.visitor_id else None
        ctx = self._context(req.visitor_id, loaded, personal, model, now, pool, trend, req.item_id, req.category)
        if req.filter is not None:
            ctx.allowed = allowed(model, catalogue, req.filter)
        ctx.excluded |= req.exclude
        if wants_list and personal:
            ctx.precomputed = kept
            self.observe_stored_list(kept is not None)
            # Only where a list made now would match: the cookie's own customer, named or not (a
            # list is made for that one), and someone with a profile (none is kept for a first-time
            # visitor).
            if kept is None and loaded.raw_visitor and req.customer_id in (None, loaded.visitor.customer_id):
                self.lists_changed([req.visitor_id])  # type: ignore[list-item]
        visitor, customer, raw = ctx.visitor, ctx.customer, loaded.extra
        picks: list[Pick] = []
        seen: set[str] = set()
        for name in eff.chain:
            if len(picks) >= pool:
                break
            ctx.excluded |= seen
            for pick in SCENARIOS[name](model, catalogue, ctx):
                if pick.item_id not in seen:
                    seen.add(pick.item_id)
                    picks.append(pick)
                    if len(picks) >= pool:
                        break
        if personal and boosts and (declared[0] or declared[1]):
            picks = lift(picks, *declared, self._settings.declared_boost, model=model, catalogue=catalogue, ctx=ctx,
                         pool=pool)
        if eff.has_rules:
            excluded = base_exclusions(ctx) | req.exclude
            shown = None
            if repetition is not None:
                counts = Exposure.decode(raw[0]).items_shown(minute(now - repetition.window_s))
                shown = lambda item_id: counts[item_hash(item_id)]  # noqa: E731
            affinity_of = affinity_owner(visitor, customer)
            picks = apply_rules(
                picks, eff, n=req.n, now=now, items=catalogue.items,
                recommendable=lambda item_id: item_id not in excluded and ctx.may_show(catalogue, item_id),
                visitor=RulesVisitor(relative(affinity_of.category_affinity),
                                     relative(affinity_of.brand_affinity), shown, segments))
        return self._response(req, snap, arm, model, picks, degraded)

    async def rerank(self, visitor_id: str | None, customer_id: str | None, items: list[str],
                     now: float | None = None) -> dict[str, Any]:
        """``items`` in the person's order (engine.ranking.rerank), each with its reason; a
        person who withdrew consent, or whose profile could not be read, gets best sellers first."""
        now = time.time() if now is None else now
        model = self.models.current
        loaded, _, degraded = await self.read(RecoRequest("rerank", visitor_id, customer_id), False)
        personal = not degraded and not withdrawn(loaded.visitor, loaded.customer, self._settings.consent_required)
        ctx = self._context(visitor_id, loaded, personal, model, now, len(items), [])
        picks = rerank(model, ctx, items)
        response: dict[str, Any] = {
            "recommendation_id": NO_EXPERIMENT.recommendation_id(),
            "model_version": model.version if model else None,
            "items": [{"item_id": item, "score": round(score * 1e6) / 1e6, "reason": reason}
                      for item, score, reason in picks],
        }
        if degraded:
            response["degraded"] = True
        return response

    @staticmethod
    def _response(req: RecoRequest, snap: RulesSnapshot, arm: Arm, model: ServedModel | None, picks: list[Pick],
                  degraded: bool) -> dict[str, Any]:
        response: dict[str, Any] = {
            "recommendation_id": arm.recommendation_id(),
            "placement": req.placement,
            "model_version": model.version if model else None,
            "rules_version": snap.version,
            # six decimals at half the cost of round(x, 6) (the two differ only on exact halves)
            "items": [{"item_id": item, "score": round(score * 1e6) / 1e6, "reason": reason}
                      for item, score, reason in picks[:req.n]],
        }
        if arm.experiment:
            response["experiment"] = {"id": arm.experiment, "arm": arm.name}
        if degraded:
            response["degraded"] = True
        return response
