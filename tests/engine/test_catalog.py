"""What depends on the catalogue is built before a snapshot goes live, and nothing grows per request."""

from __future__ import annotations

import asyncio

import numpy as np
import redis.asyncio
from scipy.sparse import csr_matrix

from engine.catalog import Catalogue, CatalogueCache, Item, upsert_items
from engine.ranking.model import ServedModel
from models.artifacts import Artifact

IDS = ["mug", "plate", "shovel", "cup", "gone"]


def model() -> ServedModel:
    n = len(IDS)
    return ServedModel(Artifact(
        item_ids=IDS, user_ids=["v:1"], item_factors=np.ones((n, 4), np.float32),
        user_items=csr_matrix(np.ones((1, n), np.float32)),
        similar_index=np.zeros((n, 1), np.int32), similar_score=np.ones((n, 1), np.float32),
        complement_index=np.zeros((n, 1), np.int32), complement_score=np.ones((n, 1), np.float32),
        popularity=np.array([1.0, 5.0, 3.0, 4.0, 9.0], np.float32), meta={"version": "m1"}))


def catalogue(version: int) -> Catalogue:
    items = [Item(item_id="mug", category="kitchen.mugs"), Item(item_id="cup", category="kitchen.mugs"),
             Item(item_id="plate", category="kitchen"), Item(item_id="shovel", category="garden"),
             Item(item_id="gone", category="kitchen.mugs", in_stock=False)]
    return Catalogue(version=version, items={i.item_id: i for i in items})


def test_categories_and_their_parents_are_built_with_the_view() -> None:
    served, shop = model(), catalogue(1)
    by_id = {name: [IDS[i] for i in served.category_items(shop, name)] for name in ("kitchen", "kitchen.mugs")}
    assert by_id == {"kitchen": ["plate", "cup", "mug"], "kitchen.mugs": ["cup", "mug"]}  # best sellers first
    view = served.view(shop)
    known = set(view.category_items)
    for asked in ("kitch", "kitchen.mug", "nowhere", *(f"invented-{i}" for i in range(1000))):
        assert len(served.category_items(shop, asked)) == 0
    assert set(view.category_items) == known == {"kitchen", "kitchen.mugs", "garden"}


def test_a_catalogue_is_prepared_before_it_goes_live(redis_url: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        seen: list[tuple[int, int]] = []
        cache = CatalogueCache(client, prepare=lambda c: seen.append((c.version, cache.current.version)))
        try:
            await upsert_items(client, catalogue(0).items.values())
            assert await cache.refresh()
            await upsert_items(client, [Item(item_id="bowl", category="kitchen")])
            assert await cache.refresh() and not await cache.refresh()
            assert seen == [(1, 0), (2, 1)]  # each prepared while the previous one was still served
            assert cache.current.version == 2 and "bowl" in cache.current.items
        finally:
            await client.aclose()

    asyncio.run(run())
