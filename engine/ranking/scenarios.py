"""Recommendation scenarios: each turns (model, catalogue, a person, a page) into ranked picks.

They are plain functions with no I/O, so they are tested without Redis or HTTP and composed into
placements by ``engine.recommend``. Each returns at most ``ctx.n`` picks, never an unavailable or
excluded item, each with the reason a merchandiser (or the visitor) can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from engine.profiles.affinity import affinity_owner
from engine.ranking.blend import blend_scores, closest_anchor, top_k
from engine.catalog import Catalogue
from engine.ranking.model import ServedModel
from engine.ranking.sessions import session_signals
from engine.profiles import CustomerProfile, VisitorProfile, history_items, visit_items

if TYPE_CHECKING:
    from engine.ranking.stored import Stored


class Pick(NamedTuple):  # a tuple, not a dataclass: tens of them are made per request
    item_id: str
    score: float
    reason: str


@dataclass
class Context:
    visitor_id: str | None
    customer_id: str | None
    visitor: VisitorProfile
    customer: CustomerProfile | None
    now: float
    n: int
    session_timeout_s: float
    item_id: str | None = None
    category: str | None = None
    exclude_purchased: bool = True
    exclude_seen: bool = True
    trending: list[tuple[str, float]] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    model_row: bool = True  # False: the model's row for the person predates their consent withdrawal
    precomputed: "Stored | None" = None  # the person's for-you list as applying their events left it

    def history(self) -> list[tuple[str, float, str]]:
        """(item, weight, why), one entry per item with its strongest signal."""
        best: dict[str, tuple[float, str]] = {}
        for item, weight, why in history_items(self.visitor, self.customer, self.now, self.session_timeout_s):
            known = best.get(item)
            if known is None or weight > known[0]:
                best[item] = (weight, why)
        return [(i, w, why) for i, (w, why) in best.items()]

    def session(self) -> list[str]:
        """The visit under way, else the last one: its distinct items, most recent first."""
        current, earlier = visit_items(self.visitor, self.now, self.session_timeout_s)
        return current or earlier

    def purchased(self) -> set[str]:
        bought = set(self.visitor.purchases)
        if self.customer is not None:
            bought |= set(self.customer.purchases)
        return bought

    def anchor(self) -> str | None:
        """The item a product-page placement is about: the page's, else the last one viewed."""
        if self.item_id:
            return self.item_id
        current, earlier = visit_items(self.visitor, self.now, self.session_timeout_s)
        return (current or earlier or [None])[0]


Scenario = Callable[[ServedModel | None, Catalogue, Context], list[Pick]]


def base_exclusions(ctx: Context) -> set[str]:
    """What no list shows: the cart, and (by setting) what the person already bought."""
    out = set(ctx.visitor.cart)
    if ctx.exclude_purchased:
        out |= ctx.purchased()
    return out


def for_you(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """The person's blend (engine.ranking.blend): ALS with the profile folded in at request time (anonymous
    visitors too), their recent and past items, what is co-visited with them, and a popularity prior.

    Items the person already touched are left out unless ``ctx.exclude_seen`` is off (then they
    compete with the rest, as ``buy_again`` or ``viewed_before``).
    """
    if model is None:
        return []
    if ctx.precomputed is not None:  # what applying the person's last events computed (engine.ranking.stored)
        stored = ctx.precomputed.serve(model.item_ids, model.view(catalogue).available_flags, ctx.excluded, ctx.n)
        if stored is not None:
            return stored
    index = model.item_index
    history = [(j, w, why, i) for i, w, why in ctx.history() if (j := index.get(i)) is not None]
    user = f"c:{ctx.customer_id}" if ctx.customer_id else (f"v:{ctx.visitor_id}" if ctx.visitor_id else None)
    if not ctx.model_row:
        user = None
    idx = np.array([h[0] for h in history], dtype=np.int32)
    weights = np.array([h[1] for h in history], dtype=np.float32)
    vector = model.fold_in(user, idx, weights)
    if vector is None:
        return []
    row_items, row_weights = model.training_row(user, by_recency=True)
    session = np.array([j for i in ctx.session() if (j := index.get(i)) is not None], dtype=np.int32)
    session_neighbours, sequence = session_signals(model, session, ctx.now)
    als = model.scores(vector) if model.blend.get("als") else model.no_scores
    scores = blend_scores(model.blend, als=als, recent=(idx, weights),
                          history=(row_items, row_weights), neighbour_index=model.artifact.similar_index,
                          neighbour_score=model.artifact.similar_score, popularity=model.popularity_prior,
                          session_neighbours=session_neighbours, sequence=sequence)
    seen = np.concatenate([idx, row_items]) if len(row_items) else idx
    excluded = np.array([i for item in ctx.excluded if (i := index.get(item)) is not None], dtype=np.int32)
    if ctx.exclude_seen:  # (int32 like every index the compiled top_k is warmed with)
        excluded = np.concatenate([excluded, seen]).astype(np.int32, copy=False)
    top, values = top_k(scores, model.view(catalogue).penalty, excluded, ctx.n)
    if not len(top):
        return []
    if not history:
        anchors = [None] * len(top)
    else:
        anchors = closest_anchor(model.unit_factors, top, idx, weights).tolist()
    bought = ctx.purchased() if not ctx.exclude_seen else set()
    seen_set = set(seen.tolist()) if not ctx.exclude_seen else set()  # else no pick was seen
    item_ids = model.item_ids
    picks = []
    for i, s, a in zip(top.tolist(), values.tolist(), anchors):
        item = item_ids[i]
        if i in seen_set:
            reason = "buy_again" if item in bought else "viewed_before"
        else:
            reason = "for_you" if a is None else f"because_you_{history[a][2]}:{history[a][3]}"
        picks.append(Pick(item, s, reason))
    return picks


def _neighbour_picks(model: ServedModel, catalogue: Catalogue, ctx: Context, anchors: list[str],
                     index: np.ndarray, score: np.ndarray, verb: str) -> list[Pick]:
    totals: dict[int, float] = {}
    best: dict[int, tuple[float, str]] = {}
    for anchor in anchors:
        a = model.item_index.get(anchor)
        if a is None:
            continue
        for j, s in zip(index[a], score[a]):
            if j < 0:
                break
            totals[int(j)] = totals.get(int(j), 0.0) + float(s)
            if int(j) not in best or s > best[int(j)][0]:
                best[int(j)] = (float(s), anchor)
    available = model.view(catalogue).available
    excluded = ctx.excluded | set(anchors)
    picks = []
    for j, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        item = model.item_ids[j]
        if available[j] and item not in excluded:
            picks.append(Pick(item, total, f"{verb}:{best[j][1]}"))
            if len(picks) == ctx.n:
                break
    return picks


def similar(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """Items people who viewed this one also viewed (product page)."""
    anchor = ctx.anchor()
    if model is None or anchor is None:
        return []
    a = model.artifact
    return _neighbour_picks(model, catalogue, ctx, [anchor], a.similar_index, a.similar_score, "similar_to")


def _cart_neighbours(model: ServedModel | None, catalogue: Catalogue, ctx: Context, bought: bool) -> list[Pick]:
    """Neighbours of the page's item and the cart's items, latest first."""
    anchors = list(dict.fromkeys([*([ctx.item_id] if ctx.item_id else []), *reversed(ctx.visitor.cart)]))
    if model is None or not anchors:
        return []
    a = model.artifact
    if bought:
        return _neighbour_picks(model, catalogue, ctx, anchors, a.complement_index, a.complement_score,
                                "bought_with")
    return _neighbour_picks(model, catalogue, ctx, anchors, a.similar_index, a.similar_score, "similar_to")


def complements(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """Items bought in the same orders as what is in the cart (or on the page)."""
    return _cart_neighbours(model, catalogue, ctx, bought=True)


def similar_to_cart(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """When nothing was bought with the cart's items yet: what resembles them."""
    return _cart_neighbours(model, catalogue, ctx, bought=False)


def category_bestsellers(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """Best sellers of the page's category, else of the one the person likes most."""
    category = ctx.category
    if category is None:
        affinity = affinity_owner(ctx.visitor, ctx.customer).category_affinity
        category = max(affinity, key=affinity.__getitem__) if affinity else None
    if model is None or category is None:
        return []
    return _ranked(model, model.category_items(catalogue, category), ctx, f"bestseller_in:{category}")


def same_category(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """For an item the model does not know yet: best sellers of its category."""
    anchor = ctx.anchor()
    info = catalogue.info(anchor) if anchor else None
    if model is None or info is None or not info.category:
        return []
    excluded = ctx.excluded | {anchor}
    return _ranked(model, model.category_items(catalogue, info.category), ctx,
                   f"popular_in:{info.category}", excluded)


def _ranked(model: ServedModel, order: np.ndarray, ctx: Context, reason: str,
            excluded: set[str] | None = None) -> list[Pick]:
    excluded = ctx.excluded if excluded is None else excluded
    popularity = model.artifact.popularity
    picks = []
    for i in order:
        item = model.item_ids[i]
        if item not in excluded:
            picks.append(Pick(item, float(popularity[i]), reason))
            if len(picks) == ctx.n:
                break
    return picks


def popular(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    if model is None:
        return []
    return _ranked(model, model.view(catalogue).popular_order, ctx, "popular")


def trending(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """What is being viewed and bought right now (decayed counters, see engine.ranking.trending)."""
    picks = []
    for item, score in ctx.trending:
        if item not in ctx.excluded and catalogue.is_available(item):
            picks.append(Pick(item, round(score, 4), "trending"))
            if len(picks) == ctx.n:
                break
    return picks


def recently_viewed(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    current, earlier = visit_items(ctx.visitor, ctx.now, ctx.session_timeout_s)
    items = list(dict.fromkeys([*current, *earlier, *(ctx.customer.recent_items if ctx.customer else [])]))
    picks = []
    for pos, item in enumerate(items):
        if catalogue.is_available(item):
            picks.append(Pick(item, round(0.9 ** pos, 4), "recently_viewed"))
            if len(picks) == ctx.n:
                break
    return picks


SCENARIOS: dict[str, Scenario] = {
    "for_you": for_you,
    "similar": similar,
    "same_category": same_category,
    "complements": complements,
    "similar_to_cart": similar_to_cart,
    "category_bestsellers": category_bestsellers,
    "trending": trending,
    "popular": popular,
    "recently_viewed": recently_viewed,
}

# Placement -> scenarios tried in order until the list is full (the fallback chain).
DEFAULT_PLACEMENTS: dict[str, tuple[str, ...]] = {
    "home": ("for_you", "trending", "popular"),
    "product": ("similar", "same_category", "trending", "popular"),
    "cart": ("complements", "similar_to_cart", "trending", "popular"),
    "category": ("category_bestsellers", "popular"),
    "trending": ("trending", "popular"),
    "popular": ("popular",),
    "recent": ("recently_viewed",),
}
