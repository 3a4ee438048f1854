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

from engine.profiles.affinity import affinity_owner, under
from engine.ranking.blend import blend, closest_anchor, top_k
from engine.catalog.content import for_catalogue
from engine.catalog import Catalogue
from engine.ranking.model import ServedModel
from engine.ranking.request import Pick
from engine.ranking.reasons import Signals, dominant, strongest_voters
from engine.ranking.stored import Stored
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.visits import history_items, visit_items
from models.rows import user_key
from engine.ranking.sessions import repeat_signal, session_signals

if TYPE_CHECKING:
    from engine.ranking.filters import Allowed


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
    precomputed: Stored | None = None  # the person's for-you list as applying their events left it
    allowed: "Allowed | None" = None  # the request's filters (engine.ranking.filters); None: no filter
    new_item_share: float = 0.0  # of a similar, category or for-you list, for new items (exploration)

    def may_show(self, catalogue: Catalogue, item_id: str) -> bool:
        """Available, and matching the request's filters if it has any."""
        return catalogue.is_available(item_id) if self.allowed is None else self.allowed.test(item_id)

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


class Scored(NamedTuple):
    """A person's blend over the whole catalogue, and what it was computed from."""

    scores: np.ndarray
    signals: Signals
    history: list[tuple[int, float, str, str]]  # (model index, weight, why, item) of the profile's items
    seen: np.ndarray  # model indices the person touched (profile and training row)


def person_scores(model: ServedModel, ctx: Context) -> Scored | None:
    """The person's blend (engine.ranking.blend): ALS with the profile folded in at request time (anonymous
    visitors too), their recent and past items, what is co-visited with them, and a popularity prior.
    None for someone the model can say nothing about (no history, no training row)."""
    index = model.item_index
    history = [(j, w, why, i) for i, w, why in ctx.history() if (j := index.get(i)) is not None]
    user = user_key(ctx.visitor_id, ctx.customer_id) if ctx.customer_id or ctx.visitor_id else None
    if not ctx.model_row:
        user = None
    idx = np.array([h[0] for h in history], dtype=np.int32)
    weights = np.array([h[1] for h in history], dtype=np.float32)
    vector = model.fold_in(user, idx, weights)
    if vector is None:
        return None
    row_items, row_weights = model.training_row(user, by_recency=True)
    session = np.array([j for i in ctx.session() if (j := index.get(i)) is not None], dtype=np.int32)
    session_neighbours, sequence = session_signals(model, session, ctx.now)
    als = model.scores(vector) if model.blend.get("als") else model.no_scores
    a = model.artifact
    blended = blend(model.blend, als=als, recent=(idx, weights), history=(row_items, row_weights),
                    neighbour_index=a.similar_index, neighbour_score=a.similar_score,
                    popularity=model.popularity_prior, session_neighbours=session_neighbours, sequence=sequence)
    repeat = repeat_signal(model, session)
    if len(repeat[0]):  # the visit's own items, by how often visits go back that far (models.repeats)
        top = float(repeat[1].max())
        np.add.at(blended.scores, repeat[0], np.float32(model.blend["repeat"] / top) * repeat[1])
    signals = Signals(model.blend, als, model.popularity_prior, (idx, weights), (row_items, row_weights),
                      a.similar_index, a.similar_score, session_neighbours, sequence, repeat,
                      votes=(blended.covisit, blended.voter))
    seen = np.concatenate([idx, row_items]) if len(row_items) else idx
    return Scored(blended.scores, signals, history, seen)


def explain(model: ServedModel, ctx: Context, scored: Scored, top: np.ndarray, values: np.ndarray) -> list[Pick]:
    """Picks with the reason the signal that added most to each one's score gives
    (engine.ranking.reasons): an item the person touched is ``buy_again`` or ``viewed_before``;
    else ``popular``, ``similar_to:X`` (co-visited with X, the item of theirs that voted most for
    it) or ``because_you_VERB:X`` (ALS: X the item of theirs its factors are closest to)."""
    if not len(top):
        return []
    history = scored.history
    signals = dominant(scored.signals, top)
    picks_list = top.tolist()
    for_als = [p for p, signal in enumerate(signals) if signal == "als"]
    anchors: dict[int, int] = {}
    if for_als and history:
        idx, weights = scored.signals.recent
        closest = closest_anchor(model.unit_factors, top[for_als], idx, weights).tolist()
        anchors = dict(zip(for_als, closest))
    voters = strongest_voters(scored.signals, [picks_list[p] for p, s in enumerate(signals) if s == "neighbours"])
    seen_set = set(scored.seen.tolist()) if not ctx.exclude_seen else set()  # else no pick was seen
    bought = ctx.purchased() if seen_set else set()
    item_ids = model.item_ids
    picks = []
    for p, (i, s, signal) in enumerate(zip(picks_list, values.tolist(), signals)):
        item = item_ids[i]
        if i in seen_set:
            reason = "buy_again" if item in bought else "viewed_before"
        elif signal == "popularity":
            reason = "popular"
        elif signal in ("session_neighbours", "sequence"):
            reason = signal  # what visits like this one went on to, or viewed next
        elif signal == "neighbours" and i in voters:
            reason = f"similar_to:{item_ids[voters[i]]}"
        elif p in anchors:
            reason = f"because_you_{history[anchors[p]][2]}:{history[anchors[p]][3]}"
        else:
            reason = "for_you"
        picks.append(Pick(item, s, reason))
    return picks


def for_you(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """The person's blend (``person_scores``), best first, each pick with its reason (``explain``);
    the last ``ctx.new_item_share`` of it new items alike what they touched (``new_for_person``).

    Items the person already touched are left out unless ``ctx.exclude_seen`` is off (then they
    compete with the rest, as ``buy_again`` or ``viewed_before``).
    """
    if model is None:
        return []
    picks = _model_for_you(model, catalogue, ctx)
    slots = int(ctx.new_item_share * ctx.n)
    if not picks or not slots or not model.view(catalogue).new_items:
        return picks
    new = None
    if ctx.precomputed is not None:
        new = stored_new(model, catalogue, ctx.precomputed, slots,
                         lambda item: item not in ctx.excluded and ctx.may_show(catalogue, item))
    return explore(picks, new_for_person(model, catalogue, ctx, slots) if new is None else new, ctx.n)


def stored_new(model: ServedModel, catalogue: Catalogue, kept: Stored, slots: int,
               available: Callable[[str], bool]) -> list[tuple[str, str]] | None:
    """The ``slots`` new items ``new_for_person`` would give now, from those applying the person's
    events kept (engine.ranking.stored), when they were compared with the same new items; None
    when they were not, or too few of them are still ``available`` to know."""
    if kept.new_window != exploration_window(model, catalogue):
        return None
    return kept.new_items(available, slots)


def _model_for_you(model: ServedModel, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    if ctx.precomputed is not None:  # what applying the person's last events computed (engine.ranking.stored)
        flags = ctx.allowed.flags if ctx.allowed is not None else model.view(catalogue).available_flags
        stored = ctx.precomputed.serve(model.item_ids, flags, ctx.excluded, ctx.n)
        if stored is not None:
            return stored
    scored = person_scores(model, ctx)
    if scored is None:
        return []
    index = model.item_index
    excluded = np.array([i for item in ctx.excluded if (i := index.get(item)) is not None], dtype=np.int32)
    if ctx.exclude_seen:  # (int32 like every index the compiled top_k is warmed with)
        excluded = np.concatenate([excluded, scored.seen]).astype(np.int32, copy=False)
    penalty = ctx.allowed.penalty if ctx.allowed is not None else model.view(catalogue).penalty
    top, values = top_k(scored.scores, penalty, excluded, ctx.n)
    return explain(model, ctx, scored, top, values)


def explore(picks: list[Pick], new: list[tuple[str, str]], n: int) -> list[Pick]:
    """``picks`` with their last slots of ``n`` given to ``new`` (item, reason) pairs, scored as
    the last pick kept: exploration, small by setting, never ahead of what the model ranks."""
    if not new:
        return picks
    kept = picks[:n - len(new)]
    return kept + [Pick(item, kept[-1].score if kept else 0.0, reason) for item, reason in new]


def _shown_new(model: ServedModel, catalogue: Catalogue, ctx: Context) -> list[str]:
    """The new items (``CatalogueView.new_items``) this request may show."""
    return [item for item in model.view(catalogue).new_items
            if item not in ctx.excluded and ctx.may_show(catalogue, item)]


def new_for_person(model: ServedModel, catalogue: Catalogue, ctx: Context, k: int) -> list[tuple[str, str]]:
    """Up to ``k`` of the ``NEWEST`` new items most alike the person's strongest items (``ANCHORS``
    of them), at least ``MIN_ALIKE`` (cosine of engine.catalog.content), each named by the item it
    resembles."""
    content = for_catalogue(catalogue)
    history = sorted(ctx.history(), key=lambda h: -h[1])
    anchors = [item for item, _, _ in history if item in content.index][:ANCHORS]
    touched = {item for item, _, _ in history} if ctx.exclude_seen else set()
    candidates = [item for item in model.view(catalogue).new_items[:NEWEST]
                  if item in content.index and item not in touched and item not in ctx.excluded
                  and ctx.may_show(catalogue, item)]
    if not anchors or not candidates:
        return []
    vectors = content.vectors
    alike = (vectors[[content.index[i] for i in candidates]]
             @ vectors[[content.index[a] for a in anchors]].T).toarray()
    best, closest = alike.max(axis=1), alike.argmax(axis=1)
    order = [c for c in np.argsort(-best, kind="stable").tolist() if best[c] >= MIN_ALIKE][:k]
    return [(candidates[c], f"similar_content:{anchors[closest[c]]}") for c in order]


def exploration_window(model: ServedModel, catalogue: Catalogue) -> str:
    """The oldest of the ``NEWEST`` new items ``new_for_person`` compares ("" while there are fewer):
    the same one means the same candidates, but for their stock (engine.ranking.stored)."""
    new = model.view(catalogue).new_items
    return new[NEWEST - 1] if len(new) >= NEWEST else ""


# For-you exploration: the person's items it compares new items with, how alike one must be (a
# shared price band or top category alone stays below it), and how many of the newest items are
# compared (bounds a request's cost when a catalogue grew much since training).
ANCHORS = 5
MIN_ALIKE = 0.3
NEWEST = 500


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
    available = ctx.allowed.mask if ctx.allowed is not None else model.view(catalogue).available
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
    """Items people who viewed this one also viewed (product page), the last ``ctx.new_item_share``
    of them new items alike it, which nobody can have viewed yet (``_new_alike``)."""
    anchor = ctx.anchor()
    if model is None or anchor is None:
        return []
    a = model.artifact
    picks = _neighbour_picks(model, catalogue, ctx, [anchor], a.similar_index, a.similar_score, "similar_to")
    slots = int(ctx.new_item_share * ctx.n)
    if not picks or not slots:
        return picks
    return explore(picks, _new_alike(model, catalogue, ctx, anchor, slots, {p.item_id for p in picks}), ctx.n)


def _new_alike(model: ServedModel, catalogue: Catalogue, ctx: Context, anchor: str, k: int,
               taken: set[str]) -> list[tuple[str, str]]:
    """Up to ``k`` items added since the model's data was read (so it cannot know them), most alike
    ``anchor``."""
    if not catalogue.items:
        return []
    content = for_catalogue(catalogue)
    new = content.newer_than(model.read_at)
    if not len(new):
        return []
    out = []
    for item, _ in content.similar(anchor, new, k + len(ctx.excluded) + len(taken)):
        if item not in ctx.excluded and item not in taken and item not in model.item_index \
                and ctx.may_show(catalogue, item):
            out.append((item, f"similar_content:{anchor}"))
            if len(out) == k:
                break
    return out


def similar_content(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """For an item the model does not know yet (a new arrival): the catalogue's items most alike
    it in title, category, brand and price (engine.catalog.content)."""
    anchor = ctx.anchor()
    if anchor is None or not catalogue.items or (model is not None and anchor in model.item_index):
        return []
    excluded = ctx.excluded | {anchor}
    picks = []
    for item, score in for_catalogue(catalogue).similar(anchor, k=2 * ctx.n + len(excluded)):
        if item not in excluded and ctx.may_show(catalogue, item):
            picks.append(Pick(item, score, f"similar_content:{anchor}"))
            if len(picks) == ctx.n:
                break
    return picks


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
    """Best sellers of the page's category, else of the one the person likes most; the last
    ``ctx.new_item_share`` of them its newest items, which nobody can have bought yet (``new_arrival``)."""
    category = ctx.category
    if category is None:
        affinity = affinity_owner(ctx.visitor, ctx.customer).category_affinity
        category = max(affinity, key=affinity.__getitem__) if affinity else None
    if model is None or category is None:
        return []
    picks = _ranked(model, category_items(model, catalogue, ctx, category), ctx, f"bestseller_in:{category}")
    slots = int(ctx.new_item_share * ctx.n)
    if not picks or not slots:
        return picks
    new = [(item, "new_arrival") for item in _shown_new(model, catalogue, ctx)
           if under(catalogue.items[item].category or "", category)]
    return explore(picks, new[:slots], ctx.n)


def same_category(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """For an item the model does not know yet: best sellers of its category."""
    anchor = ctx.anchor()
    info = catalogue.info(anchor) if anchor else None
    if model is None or info is None or not info.category:
        return []
    excluded = ctx.excluded | {anchor}
    return _ranked(model, category_items(model, catalogue, ctx, info.category), ctx,
                   f"popular_in:{info.category}", excluded)


def category_items(model: ServedModel, catalogue: Catalogue, ctx: Context, category: str) -> np.ndarray:
    """Available items of ``category`` (and below) that pass the request's filters, best sellers first."""
    if ctx.allowed is None:
        return model.category_items(catalogue, category)
    return ctx.allowed.category_items(category)


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
    order = ctx.allowed.popular_order if ctx.allowed is not None else model.view(catalogue).popular_order
    return _ranked(model, order, ctx, "popular")


def trending(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    """What is being viewed and bought right now (decayed counters, see engine.ranking.trending)."""
    picks = []
    for item, score in ctx.trending:
        if item not in ctx.excluded and ctx.may_show(catalogue, item):
            picks.append(Pick(item, round(score, 4), "trending"))
            if len(picks) == ctx.n:
                break
    return picks


def recently_viewed(model: ServedModel | None, catalogue: Catalogue, ctx: Context) -> list[Pick]:
    current, earlier = visit_items(ctx.visitor, ctx.now, ctx.session_timeout_s)
    items = list(dict.fromkeys([*current, *earlier, *(ctx.customer.recent_items if ctx.customer else [])]))
    picks = []
    for pos, item in enumerate(items):
        if ctx.may_show(catalogue, item):
            picks.append(Pick(item, round(0.9 ** pos, 4), "recently_viewed"))
            if len(picks) == ctx.n:
                break
    return picks


SCENARIOS: dict[str, Scenario] = {
    "for_you": for_you,
    "similar": similar,
    "similar_content": similar_content,
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
    "product": ("similar", "similar_content", "same_category", "trending", "popular"),
    "cart": ("complements", "similar_to_cart", "trending", "popular"),
    "category": ("category_bestsellers", "popular"),
    "trending": ("trending", "popular"),
    "popular": ("popular",),
    "recent": ("recently_viewed",),
}
