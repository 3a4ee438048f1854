"""Declared interests in ranking: items in a person's declared favourite categories or brands
(engine.profiles.preferences) are lifted in their personal lists.

The lift is ``VITRINE_DECLARED_BOOST`` times the pool's top score, added to each matching item's
score, so it means the same under any blend. Best sellers of each declared category join the pool
first (behaviour may not have found that category yet); a declared brand lifts what is already in
it. An item's reason becomes ``declared_interest`` when the lift is the largest term of its score.
Pure: no I/O.
"""

from __future__ import annotations

from engine.catalog import Catalogue
from engine.profiles.preferences import matches
from engine.ranking.model import ServedModel
from engine.ranking.request import Pick
from engine.ranking.scenarios import Context, category_items

REASON = "declared_interest"


def lift(picks: list[Pick], categories: list[str], brands: list[str], boost: float, *, model: ServedModel | None,
         catalogue: Catalogue, ctx: Context, pool: int) -> list[Pick]:
    """``picks`` plus the declared categories' best sellers, re-ranked with the lift; at most
    ``max(len(picks), pool)`` of them."""
    if boost <= 0 or not (categories or brands):
        return picks
    top = max((p.score for p in picks), default=0.0)
    add = boost * (top if top > 0 else 1.0)
    seen = {p.item_id for p in picks}
    candidates = list(picks)
    if model is not None:
        for category in categories:
            added = 0
            for i in category_items(model, catalogue, ctx, category).tolist():
                item = model.item_ids[i]
                if item in seen or item in ctx.excluded or not ctx.may_show(catalogue, item):
                    continue
                seen.add(item)
                candidates.append(Pick(item, 0.0, REASON))
                added += 1
                if added >= pool:
                    break
    out = []
    for pick in candidates:
        info = catalogue.info(pick.item_id)
        if info is not None and matches(info.category, info.brand, categories, brands):
            pick = Pick(pick.item_id, pick.score + add, REASON if add > pick.score else pick.reason)
        out.append(pick)
    out.sort(key=lambda p: -p.score)  # stable: ties keep the pool's order
    return out[:max(len(picks), pool)]
