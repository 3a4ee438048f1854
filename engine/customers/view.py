"""The single customer view: one read of a customer's profile, their cookies and what they were
shown, turned into identity, consent per purpose, RFM, affinities, segments, value and churn scores
with their reasons, and commercial-pressure counters."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis

from engine.customers.merge import merged_ids, root
from engine.customers.scores import History, Scores, explain, score
from engine.merch.exposure import Exposure, minute
from engine.merch.segments import DEFAULT_SET, SegmentSet, members
from engine.profiles import consent, preferences
from engine.profiles.preferences import Declared
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.view import DAY, _affinity, iso
from engine.store import cluster, keys
from models.customer_value import ShopModel

WINDOWS_DAYS = (1, 7, 30)


def rfm(c: CustomerProfile, now: float) -> dict[str, Any]:
    gap = (c.last_order - c.first_order) / DAY / (c.orders - 1) if c.orders > 1 else None
    return {
        "recency_days": round((now - c.last_order) / DAY, 1) if c.last_order else None,
        "frequency": c.orders,
        "monetary": c.revenue,
        "average_basket": round(c.revenue / c.orders, 2) if c.orders else None,
        "inter_purchase_days": round(gap, 1) if gap is not None else None,
    }


def scores(model: ShopModel | None, c: CustomerProfile, now: float) -> dict[str, Any] | None:
    """None before ``vitrine train`` fitted a shop model, or before a first order."""
    if model is None or c.orders < 1:
        return None
    history = History(c.first_order, c.last_order, c.orders, c.revenue)
    result = score(model, history, now)
    assert result is not None
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(result).items()},
            "horizon_days": model.horizon_days, "reasons": explain(model, history, now)}


def _scores(model: ShopModel | None, c: CustomerProfile, now: float) -> Scores | None:
    return score(model, History(c.first_order, c.last_order, c.orders, c.revenue), now) if model else None


def pressure(shown: Exposure, now: float) -> dict[str, Any]:
    """What the person was shown, per window: block impressions and items shown (from the exposure
    state, which keeps ``VITRINE_EXPOSURE_RETENTION_S``)."""
    now_minute = minute(now)
    out: dict[str, Any] = {}
    for days in WINDOWS_DAYS:
        since = now_minute - days * 1440
        out[f"{days}d"] = {"block_impressions": sum(1 for ms in shown.blocks.values() for m in ms if m >= since),
                           "items_shown": sum(1 for _, m in shown.items if m >= since)}
    return out


async def customer_view(redis: Redis, customer_id: str, model: ShopModel | None, now: float, *,
                        consent_required: bool, segments: SegmentSet = DEFAULT_SET) -> dict[str, Any] | None:
    """None when there is no profile for this customer; ``segments``: the shop's definitions. A
    customer id merged into another reads as the customer it was merged into
    (``identity.merged_ids`` lists it)."""
    customer_id = await root(redis, customer_id)
    raw, raw_declared = await redis.mget([keys.customer(customer_id), keys.customer_preferences(customer_id)])
    if not raw:
        return None
    merged_away = await merged_ids(redis, customer_id)
    c = CustomerProfile.decode(raw)
    visitors = c.visitors
    raws = await cluster.mget(redis, [*(keys.visitor(v) for v in visitors), *(keys.exposure(v) for v in visitors)]) \
        if visitors else []
    profiles = [VisitorProfile.decode(r) for r in raws[:len(visitors)]]
    latest = max(profiles, key=lambda v: v.last_seen, default=VisitorProfile())
    shown = Exposure()
    for r in raws[len(visitors):]:
        part = Exposure.decode(r)
        for block, minutes in part.blocks.items():  # each cookie's impressions are the person's
            shown.blocks.setdefault(block, []).extend(minutes)
        shown.items.extend(part.items)
    channels: dict[str, bool] = {}
    for p in profiles:  # the most restrictive choice across the person's cookies
        for k, v in p.channels.items():
            channels[k] = channels.get(k, True) and v
    merged = VisitorProfile(channels=channels)
    record = Declared.decode(raw_declared)
    declared = preferences.interests_of([record])
    return {
        "customer_id": customer_id,
        "identity": {"devices": visitors, "first_seen": iso(c.first_seen), "last_seen": iso(c.last_seen),
                     "first_order": iso(c.first_order), "last_order": iso(c.last_order),
                     "merged_ids": list(merged_away)},
        "consent": consent.state(merged, c, consent_required),
        "rfm": rfm(c, now),
        "category_affinity": _affinity(c.category_affinity),
        "brand_affinity": _affinity(c.brand_affinity),
        "traits": c.traits,
        "segments": members(segments, latest, c, now, lambda c, now: _scores(model, c, now),
                            declared if not consent.withdrawn(latest, c, consent_required) else ((), ())),
        "scores": scores(model, c, now),
        "pressure": pressure(shown, now),
        "recent_items": c.recent_items,
        "purchases": dict(reversed(list(c.purchases.items()))),
        "declared_preferences": preferences.readable(record, merged, c, consent_required),
    }
