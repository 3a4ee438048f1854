"""A list the shop already has (search results, a category listing) in the person's order.

The same blend as the for-you list (``engine.ranking.scenarios.person_scores``), read at the given
items only: the caller's list is theirs, so nothing is dropped or added (not the cart, not what is
out of stock) and each item comes back once with the reason its score has. Pure: no I/O.
"""

from __future__ import annotations

import numpy as np

from engine.ranking.model import ServedModel
from engine.ranking.scenarios import Context, Pick, explain, person_scores

MAX_ITEMS = 200  # per request: one pass over the catalogue plus a few hundred lookups


def rerank(model: ServedModel | None, ctx: Context, items: list[str]) -> list[Pick]:
    """``items`` (duplicates dropped) best first for the person in ``ctx``. With no history to go on,
    best sellers first (``popular``); items the model does not know keep their given order after
    the others (``as_given``)."""
    distinct = list(dict.fromkeys(items))
    index = model.item_index if model is not None else {}
    known = np.array([j for item in distinct if (j := index.get(item)) is not None], dtype=np.int64)
    unknown = [Pick(item, 0.0, "as_given") for item in distinct if item not in index]
    if model is None or not len(known):
        return unknown
    ctx.exclude_seen = False  # an item the person touched stays, and says so (viewed_before, buy_again)
    scored = person_scores(model, ctx)
    if scored is None:
        prior = model.popularity_prior[known]
        order = np.argsort(-prior, kind="stable")
        return [Pick(model.item_ids[known[o]], float(prior[o]), "popular") for o in order.tolist()] + unknown
    values = scored.scores[known]
    order = np.argsort(-values, kind="stable")
    return explain(model, ctx, scored, known[order], values[order]) + unknown
