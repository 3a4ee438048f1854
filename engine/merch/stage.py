"""The rules stage: a placement's candidate pool -> the merchandised list of ``n`` items.

Scenarios produce a pool larger than ``n`` (``pool_size``); this stage then applies, in this
order (engine/merch/README.md documents it, the tests pin it):

1. **filters**: the placement's and every running campaign's filter must all hold;
   **anti-repetition** drops items the visitor was shown ``max`` times within the window.
2. **boosts and buries**: when there are any, each candidate's score becomes its rank score
   ``1 - rank / len(pool)`` (scenarios score on different scales) times each matching factor;
   affinity rules multiply by ``1 + (factor - 1) * affinity``; a rule with segments counts only
   for their members. Stable: ties keep pool order.
3. **pins**: each active pin puts its item at its slot; if an earlier pin took it (running
   campaigns' pins come before the placement's own), the next free slot. Pins skip filters,
   boosts and repetition (a merchandiser asked for that item there) but never show an item that
   is out of stock, in the cart or already bought.
4. **promoted share**: ``round(share * n)`` slots, spread evenly through the list, go to the best
   promoted items (from the pool first, then the promoted set by popularity), filters applied.
5. **diversity**: the remaining slots are filled from the ranked pool, at most
   ``max_per_category`` per category (pinned and promoted items count towards it).
6. **cut**: empty slots close up, so a list is shorter rather than padded with rule-breaking items.

Everything here is pure: the same inputs give the same list, in live traffic and in a preview.
"""

from __future__ import annotations

import itertools
from functools import cached_property
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from engine.profiles.affinity import affinity_above
from engine.catalog import Item
from engine.merch.schema import Boost, Diversity, Pin, Promoted, Repetition, Selector
from engine.ranking.request import Pick
from engine.merch.selectors import ItemSet, matches

MAX_POOL = 2000


@dataclass(frozen=True)
class Effective:
    """A placement's rules at one moment: its own (or its experiment variant's) plus those of the
    campaigns running then."""

    chain: tuple[str, ...]
    filters: tuple[Selector, ...] = ()
    boosts: tuple[Boost, ...] = ()  # boosts and buries alike: factors above or below 1
    pins: tuple[Pin, ...] = ()
    promoted: Promoted | None = None
    promoted_fallback: tuple[str, ...] = ()  # promoted items by popularity, filters applied
    diversity: Diversity | None = None
    repetition: Repetition | None = None
    candidates: int | None = None
    selectivity: float = 1.0  # share of the catalogue that passes the filters
    # Precomputed per model/catalogue version (engine.merch.live); without them every rule is
    # evaluated item by item, with the same result.
    allowed: ItemSet | None = None  # the filters
    promoted_set: ItemSet | None = None
    index: Mapping[str, int] | None = None  # model item -> position in static_boost
    static_boost: Sequence[float] | None = None  # product of the `when` factors without new_arrivals
    dynamic_boosts: tuple[Boost, ...] = ()  # the rest: affinity rules, new_arrivals conditions, segments

    @cached_property
    def by_segment(self) -> bool:
        """Whether a boost or bury depends on the person's segments."""
        return any(b.restricted for b in self.boosts)

    @property
    def has_rules(self) -> bool:
        return bool(self.filters or self.boosts or self.pins or self.promoted or self.diversity
                     or self.repetition)


@dataclass(frozen=True)
class Visitor:
    """What the stage needs to know about the person: affinities relative to their strongest one
    (0..1), how often an item was shown to them within the repetition window, and their segments
    (read by boosts restricted to some)."""

    category_affinity: Mapping[str, float]
    brand_affinity: Mapping[str, float]
    shown: Callable[[str], int] | None = None
    segments: Collection[str] = ()


def pool_size(eff: Effective, n: int) -> int:
    """How many candidates to ask the scenarios for: enough that ``n`` survive the filters."""
    if not eff.has_rules:
        return n
    if eff.candidates is not None:
        return max(eff.candidates, n)
    return min(MAX_POOL, int(4 * n / max(eff.selectivity, 0.002)))


def _factor(boost: Boost, item: Item | None, visitor: Visitor, now: float) -> float:
    if boost.restricted and not boost.admits(visitor.segments):
        return 1.0
    if boost.when is not None:
        return boost.factor if matches(boost.when, item, now) else 1.0
    if item is None:
        return 1.0
    if boost.affinity == "category":
        a = affinity_above(item.category, visitor.category_affinity)
    else:
        a = visitor.brand_affinity.get(item.brand or "", 0.0)
    return 1.0 + (boost.factor - 1.0) * a


def _boost(eff: Effective, item_id: str, item: Item | None, visitor: Visitor, now: float) -> float:
    position = eff.index.get(item_id) if eff.static_boost is not None and eff.index is not None else None
    if position is not None:
        factor, rules = eff.static_boost[position], eff.dynamic_boosts  # type: ignore[index]
    else:
        factor, rules = 1.0, eff.boosts
    for boost in rules:
        factor *= _factor(boost, item, visitor, now)
    return factor


def _category_key(item: Item | None, diversity: Diversity) -> str:
    category = item.category if item is not None and item.category else ""
    if diversity.depth is not None:
        category = ".".join(category.split(".")[: diversity.depth])
    return category


def apply_rules(pool: list[Pick], eff: Effective, *, n: int, now: float, items: Mapping[str, Item],
                recommendable: Callable[[str], bool], visitor: Visitor) -> list[Pick]:
    """``recommendable(item)`` says whether an item may be shown at all (in stock, in the
    catalogue, not in the cart or already bought): what the scenarios' pool already respects."""
    # 1. filters and anti-repetition
    repeat = eff.repetition
    seen_too_often = (lambda item_id: visitor.shown is not None and repeat is not None
                      and visitor.shown(item_id) >= repeat.max)

    allowed = eff.allowed or ItemSet(eff.filters)

    def passes(item_id: str) -> bool:
        return allowed.contains(item_id, items.get(item_id), now) and not seen_too_often(item_id)

    ranked = [p for p in pool if recommendable(p.item_id) and passes(p.item_id)]
    # 2. boosts and buries
    if eff.boosts and ranked:
        size = len(pool)
        position = {p.item_id: i for i, p in enumerate(pool)}
        scored = []
        for p in ranked:
            score = (1.0 - position[p.item_id] / size) * _boost(eff, p.item_id, items.get(p.item_id), visitor, now)
            scored.append(Pick(p.item_id, score, p.reason))
        ranked = sorted(scored, key=lambda p: -p.score)  # sorted() is stable

    slots: list[Pick | None] = [None] * n
    placed: set[str] = set()
    pool_score = {p.item_id: p.score for p in pool}

    def put(pick: Pick, at: int) -> bool:
        for pos in range(at, n):
            if slots[pos] is None:
                slots[pos] = pick
                placed.add(pick.item_id)
                return True
        return False

    # 3. pins
    for pin in eff.pins:
        if pin.slot <= n and pin.active(now) and pin.item not in placed and recommendable(pin.item):
            put(Pick(pin.item, pool_score.get(pin.item, 0.0), "pinned"), pin.slot - 1)
    # 4. promoted share
    promoted = eff.promoted
    if promoted is not None and promoted.share > 0:
        quota = min(int(promoted.share * n + 0.5), n)
        targets = [((j + 1) * n) // (quota + 1) for j in range(quota)]
        promoted_set = eff.promoted_set or ItemSet((promoted.select,))
        ranked_promoted = (p.item_id for p in ranked if promoted_set.contains(p.item_id, items.get(p.item_id), now))
        taken = 0
        for item_id in itertools.chain(ranked_promoted, eff.promoted_fallback):  # lazily: few are needed
            if taken == quota:
                break
            if item_id in placed or not recommendable(item_id) or not passes(item_id):
                continue
            if not put(Pick(item_id, pool_score.get(item_id, 0.0), "promoted"), targets[taken]):
                break
            taken += 1
    # 5. diversity while filling the rest
    diversity = eff.diversity
    per_category: dict[str, int] = {}
    if diversity is not None:
        for pick in slots:
            if pick is not None:
                key = _category_key(items.get(pick.item_id), diversity)
                per_category[key] = per_category.get(key, 0) + 1
    free = [i for i, s in enumerate(slots) if s is None]
    candidates = iter(ranked)
    for pos in free:
        for pick in candidates:
            if pick.item_id in placed:
                continue
            if diversity is not None:
                key = _category_key(items.get(pick.item_id), diversity)
                if per_category.get(key, 0) >= diversity.max_per_category:
                    continue
                per_category[key] = per_category.get(key, 0) + 1
            slots[pos] = pick
            placed.add(pick.item_id)
            break
    # 6. cut
    return [s for s in slots if s is not None]

