"""A filter's mask over the model's items is exactly the per-item test, whatever it combines
(engine.ranking.filters, pure: crafted model and catalogue)."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix

from engine.catalog import Catalogue, Item
from engine.ranking.filters import ItemFilter, allowed
from engine.ranking.model import ServedModel
from models.artifacts import Artifact

ITEMS = [
    Item(item_id="a", category="home.kitchen.mugs", brand="Acme", price=5.0, attributes={"colour": "red", "size": 2}),
    Item(item_id="b", category="home.kitchen", brand="acme", price=12.5, in_stock=False, attributes={"ok": True}),
    Item(item_id="c", category="home.garden", brand="Other", price=None),
    Item(item_id="d", category="sport", brand=None, price=50.0, attributes={"colour": "blue"}),
    Item(item_id="e", category=None, brand="ACME", price=0.0),
]
MODEL_ITEMS = ["e", "a", "x", "b", "c", "d"]  # "x": known to the model, gone from the catalogue


def served() -> ServedModel:
    n = len(MODEL_ITEMS)
    empty = csr_matrix((0, n), dtype=np.float32)
    neighbours = np.full((n, 1), -1, dtype=np.int32)
    return ServedModel(Artifact(
        item_ids=MODEL_ITEMS, user_ids=[], item_factors=np.eye(n, 2, dtype=np.float32), user_items=empty,
        similar_index=neighbours, similar_score=np.zeros((n, 1), dtype=np.float32), complement_index=neighbours,
        complement_score=np.zeros((n, 1), dtype=np.float32),
        popularity=np.array([1, 6, 9, 4, 3, 2], dtype=np.float32), meta={"version": "filters"}))


FILTERS = [ItemFilter(categories=c, brands=b, price_min=lo, price_max=hi, in_stock=s, attributes=a)
           for c, b, (lo, hi), s, a in itertools.product(
               [(), ("home",), ("home.kitchen", "sport"), ("home.kitchen.mugs",), ("nowhere",)],
               [(), ("acme",), ("other", "acme")],
               [(None, None), (5.0, None), (None, 12.5), (1.0, 20.0)],
               [True, False],
               [(), (("colour", "red"),), (("size", "2.0"),), (("ok", "true"),)])]


def test_the_mask_is_the_per_item_test_for_every_combination() -> None:
    model = served()
    catalogue = Catalogue(version=3, items={i.item_id: i for i in ITEMS})
    for f in FILTERS:
        got = allowed(model, catalogue, f)
        expected = [f.matches(catalogue.items[i]) if i in catalogue.items else False for i in MODEL_ITEMS]
        assert got.mask.tolist() == expected, f
        assert [got.test(i) for i in MODEL_ITEMS] == expected, f
        assert [MODEL_ITEMS[j] for j in got.popular_order] == [
            i for i in ("a", "b", "c", "d", "e") if expected[MODEL_ITEMS.index(i)]], f
        kitchen = [MODEL_ITEMS[j] for j in got.category_items("home.kitchen")]
        assert kitchen == [i for i in ("a", "b") if expected[MODEL_ITEMS.index(i)]], f


def test_without_a_catalogue_only_a_stock_filter_lets_anything_through() -> None:
    model, empty = served(), Catalogue(version=0, items={})
    assert not allowed(model, empty, ItemFilter(brands=("acme",))).mask.any()
    assert allowed(model, empty, ItemFilter(in_stock=False)).mask.all()
    assert allowed(None, empty, ItemFilter(in_stock=False)).test("anything")
