"""Content blocks: which block a visitor gets in a slot, and its text.

The slot's blocks are tried by priority; the first one that is running (its dates and its
campaign's), eligible (its ``when`` conditions over the profile and segments) and not capped
(block, campaign and global frequency caps, counted from impressions in ``engine.merch.exposure``)
wins. A capped block is skipped for the next eligible one. Text is filled in by
``engine.merch.templates``: values are never evaluated and are HTML-escaped in HTML blocks.

Everything but ``BlockPicker.pick`` is pure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from engine.store import keys

from engine.merch import templates
from engine.profiles.affinity import affinity_below, affinity_owner, relative, under
from engine.catalog import Catalogue, CatalogueCache
from engine.merch.experiments import in_control_group
from engine.merch.exposure import Exposure, minute
from engine.profiles.consent import granted, withdrawn
from engine.profiles.preferences import Declared, interests_of
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.visits import visit_items
from engine.ranking.request import Read, RecoRequest
from engine.merch.live import RulesHolder, RulesSnapshot
from engine.merch.schema import Block, Cap, Condition
from engine.merch.segments import Scorer, SegmentSet, members


class UnknownSlot(ValueError):
    pass


@dataclass(frozen=True)
class Person:
    visitor: VisitorProfile
    customer: CustomerProfile | None
    customer_id: str | None
    now: float
    session_timeout_s: float
    segment_set: SegmentSet  # the rules' (``RulesSnapshot.segments``)
    scorer: Scorer | None = None
    declared: tuple[list[str], list[str]] = ([], [])  # favourite categories and brands (engine.profiles.preferences)

    @cached_property
    def segments(self) -> list[str]:
        """Evaluated once per request, on first use."""
        return members(self.segment_set, self.visitor, self.customer, self.now, self.scorer, self.declared)

    def affinity(self) -> dict[str, float]:
        return relative(affinity_owner(self.visitor, self.customer).category_affinity)

    def last_visit_items(self) -> list[str]:
        return visit_items(self.visitor, self.now, self.session_timeout_s)[1]


def eligible(when: Condition | None, person: Person) -> bool:
    if when is None:
        return True
    v, c = person.visitor, person.customer
    checks = [
        when.visitor is None or when.visitor in person.segments,
        not when.restricted or when.admits(person.segments),
        when.has_last_visit_items is None or bool(person.last_visit_items()) == when.has_last_visit_items,
        when.cart is None or (when.cart == "not_empty") == bool(v.cart),
        when.customer_tier is None or (c is not None and c.traits.get("tier") in when.customer_tier),
        when.logged_in is None or (person.customer_id is not None) == when.logged_in,
        when.consent is None or granted(v, c) == when.consent,
        when.declared_categories is None or any(under(d, c) for d in person.declared[0]
                                                for c in when.declared_categories),
        when.declared_brands is None or any(b in person.declared[1] for b in when.declared_brands),
    ]
    if not all(checks):
        return False
    if when.category_affinity:
        affinity = person.affinity()
        return all(affinity_below(cat, affinity) >= threshold for cat, threshold in when.category_affinity.items())
    return True


def cap_reason(block: Block, snap: RulesSnapshot, x: Exposure, person: Person) -> str | None:
    """Why the block may not be shown again yet (None: it may). A cap with segments holds only
    for their members."""
    rules, now = snap.rules, person.now

    def _over(cap: Cap | None, block_ids: list[str]) -> bool:
        return (cap is not None and (not cap.restricted or cap.admits(person.segments))
                and x.block_impressions(block_ids, minute(now - cap.window_s)) >= cap.max)

    if _over(block.cap, [block.id]):
        return f"block cap {block.cap.max} per {block.cap.window}"  # type: ignore[union-attr]
    if block.campaign is not None:
        campaign = rules.campaigns[block.campaign]
        in_campaign = [b.id for b in rules.blocks if b.campaign == block.campaign]
        if _over(campaign.cap, in_campaign):
            return f"campaign {block.campaign} cap {campaign.cap.max} per {campaign.cap.window}"  # type: ignore[union-attr]
        in_campaigns = [b.id for b in rules.blocks if b.campaign is not None]
        if _over(rules.frequency, in_campaigns):
            return f"global cap {rules.frequency.max} per {rules.frequency.window}"  # type: ignore[union-attr]
    return None


def running(block: Block, snap: RulesSnapshot, now: float) -> bool:
    campaign = snap.rules.campaigns.get(block.campaign or "")
    return block.active(now) and (campaign is None or campaign.active(now))


def category_label(category: str, names: dict[str, str]) -> str:
    """The merchandiser's name for a category (or its nearest parent's), else its last part."""
    parts = category.split(".")
    for depth in range(len(parts), 0, -1):
        label = names.get(".".join(parts[:depth]))
        if label:
            return label
    return parts[-1].replace("_", " ")


def template_values(person: Person, catalogue: Catalogue, snap: RulesSnapshot) -> dict[str, str | None]:
    v, c = person.visitor, person.customer
    traits = c.traits if c is not None else {}
    affinity = person.affinity()
    favourite = max(affinity, key=affinity.__getitem__) if affinity else None
    last = person.last_visit_items()
    last_item = catalogue.items.get(last[0]) if last else None
    return {
        "first_name": traits.get("first_name"),
        "tier": traits.get("tier"),
        "favourite_category": category_label(favourite, snap.rules.category_names) if favourite else None,
        "last_visit_item": (last_item.title or last_item.item_id) if last_item else None,
        "last_visit_item_id": last[0] if last else None,
        "cart_items": str(sum(v.cart.values())) if v.cart else None,
        "visits": str(v.visits) if v.visits else None,
    }


def render(block: Block, values: dict[str, str | None], snap: RulesSnapshot) -> dict[str, Any]:
    as_html = block.format == "html"
    defaults = snap.rules.template_defaults
    out: dict[str, Any] = {"id": block.id, "kind": block.kind, "format": block.format, "campaign": block.campaign}
    for name in ("title", "body", "cta"):
        out[name] = templates.parse(getattr(block, name)).render(values, defaults, as_html=as_html)
    for name in ("link", "image"):
        if getattr(block, name):
            out[name] = getattr(block, name)
    return out


def choose(snap: RulesSnapshot, slot: str, person: Person, x: Exposure) -> tuple[Block | None, list[dict[str, str]]]:
    """The winning block, and why each higher-priority block was passed over."""
    skipped: list[dict[str, str]] = []
    for block in snap.blocks_for(slot):
        if not running(block, snap, person.now):
            skipped.append({"id": block.id, "reason": "not running"})
        elif not eligible(block.when, person):
            skipped.append({"id": block.id, "reason": "not eligible"})
        elif (why := cap_reason(block, snap, x, person)) is not None:
            skipped.append({"id": block.id, "reason": why})
        else:
            return block, skipped
    return None, skipped


class Recommendations(Protocol):
    """What blocks need of the read path: the live rules and catalogue, one profile read, and the
    strip a block may carry (``engine.recommend.Recommender``)."""

    rules: RulesHolder
    catalogue: CatalogueCache
    scorer: Scorer | None  # customers' scores, for segments that ask for them

    async def read(self, req: RecoRequest, needs_trending: bool, extra_keys: tuple[str, ...] = (),
                   preferences: bool = False) -> Read: ...

    async def recommend(self, req: RecoRequest, snapshot: RulesSnapshot | None = None,
                        now: float | None = None) -> dict[str, Any]: ...


class BlockPicker:
    def __init__(self, recommender: Recommendations, session_timeout_s: float, consent_required: bool = False) -> None:
        self._reco = recommender
        self._timeout = session_timeout_s
        self._consent_required = consent_required

    async def pick(self, slot: str, visitor_id: str | None, customer_id: str | None = None,
                   item_id: str | None = None, snapshot: RulesSnapshot | None = None,
                   now: float | None = None, explain: bool = False) -> dict[str, Any]:
        """The slot's block for this person; ``explain`` adds why higher-priority blocks lost."""
        snap = snapshot or self._reco.rules.current
        if not snap.blocks_for(slot):
            raise UnknownSlot(f"no blocks for slot {slot!r}; slots: {', '.join(snap.slots) or 'none configured'}")
        now = time.time() if now is None else now
        request = RecoRequest(placement="", visitor_id=visitor_id, customer_id=customer_id, item_id=item_id)
        extra = (keys.exposure(visitor_id),) if visitor_id else ()
        declares = snap.segments.needs_declared or any(
            b.when is not None and (b.when.declared_categories or b.when.declared_brands) for b in snap.blocks_for(slot))
        loaded, _, degraded = await self._reco.read(request, False, extra, preferences=declares)
        visitor, customer, cid = loaded.visitor, loaded.customer, loaded.customer_id
        declared = interests_of([Declared.decode(r) for r in loaded.raw_preferences])
        exposure = Exposure.decode(loaded.extra[0] if loaded.extra else None)
        if withdrawn(visitor, customer, self._consent_required):
            visitor, customer, cid = VisitorProfile(consent=False), None, None  # nothing about them is used
            declared = ([], [])
        elif in_control_group(snap.rules.control_group, visitor_id or customer_id):
            visitor, customer, cid = VisitorProfile(), None, None  # the non-personalised baseline
            declared = ([], [])
        person = Person(visitor, customer, cid, now, self._timeout, snap.segments, self._reco.scorer, declared)
        block, skipped = choose(snap, slot, person, exposure)
        body: dict[str, Any] = {"slot": slot, "rules_version": snap.version, "block": None}
        if explain:
            body["skipped"] = skipped
        if block is not None:
            rendered = render(block, template_values(person, self._reco.catalogue.current, snap), snap)
            if block.recommendations is not None:
                strip = RecoRequest(placement=block.recommendations.placement, visitor_id=visitor_id,
                                    customer_id=customer_id, item_id=item_id, n=block.recommendations.n)
                rendered["recommendations"] = await self._reco.recommend(strip, snap, now)
            body["block"] = rendered
        if degraded:
            body["degraded"] = True
        return body
