"""Request filters on a recommendation list: categories, brands, a price range, stock, attributes.

A page asks "for you, in these categories, under 50 EUR": every scenario must then rank only the
matching items, not cut a ranked list afterwards (a narrow filter would leave it empty). So a
filter becomes what the scenarios already respect for availability: a model-aligned mask (and its
-inf penalty for ``top_k``), built once per (model, catalogue version, filter) and kept in a small
LRU, plus a per-item test for items the model does not know (trending, recently viewed). Pure but
for that cache: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

import numpy as np

from engine.catalog import Catalogue, Item
from engine.profiles.affinity import lineage
from engine.ranking.model import ServedModel

CACHED_FILTERS = 64


@dataclass(frozen=True)
class ItemFilter:
    """What an item must be to be shown. ``categories``: dotted paths, each with its subcategories;
    ``brands``: lower case; ``in_stock=False`` lets out-of-stock items be shown too."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool = True
    attributes: tuple[tuple[str, str], ...] = ()  # (name, value) pairs, all must be equal

    @property
    def names_fields(self) -> bool:
        """Constrains item fields, which only a catalogue can tell (not only stock)."""
        return bool(self.categories or self.brands or self.attributes
                    or self.price_min is not None or self.price_max is not None)

    def matches(self, item: Item) -> bool:
        if self.in_stock and not item.in_stock:
            return False
        if self.categories:
            category = item.category
            if not category or not any(category == c or category.startswith(c + ".") for c in self.categories):
                return False
        if self.brands and (item.brand or "").lower() not in self.brands:
            return False
        if self.price_min is not None and (item.price is None or item.price < self.price_min):
            return False
        if self.price_max is not None and (item.price is None or item.price > self.price_max):
            return False
        return all(name in item.attributes and attribute_equals(item.attributes[name], value)
                   for name, value in self.attributes)



def attribute_equals(stored: str | int | float | bool | None, wanted: str) -> bool:
    """A query string value against a catalogue attribute of any JSON type: booleans as
    ``true``/``false``, numbers by value (``5`` equals ``5.0``), text exactly."""
    if isinstance(stored, bool):
        return wanted.lower() == ("true" if stored else "false")
    if isinstance(stored, (int, float)):
        try:
            return float(wanted) == float(stored)
        except ValueError:
            return False
    if stored is None:
        return wanted.lower() == "null"
    return stored == wanted


@dataclass(frozen=True)
class Columns:
    """The catalogue's filterable fields aligned to a model's items, built once per (model,
    catalogue snapshot), so that a filter is a few numpy operations, not a pass over the items."""

    present: np.ndarray  # bool: in the catalogue
    in_stock: np.ndarray  # bool
    price: np.ndarray  # float64, NaN where unknown
    brand: np.ndarray  # object: lower-case brand, "" where none
    categories: dict[str, np.ndarray]  # category and each parent -> its item indices
    popular_order: np.ndarray  # int32: every item by popularity, best first

    @classmethod
    def of(cls, model: ServedModel, catalogue: Catalogue) -> "Columns":
        n, items = model.n_items, catalogue.items
        found = [items.get(i) for i in model.item_ids]
        members: dict[str, list[int]] = {}
        for j, item in enumerate(found):
            if item is not None and item.category:
                for category in lineage(item.category):
                    members.setdefault(category, []).append(j)
        return cls(
            present=np.fromiter((i is not None for i in found), dtype=bool, count=n),
            in_stock=np.fromiter((i is not None and i.in_stock for i in found), dtype=bool, count=n),
            price=np.fromiter((i.price if i is not None and i.price is not None else np.nan for i in found),
                              dtype=np.float64, count=n),
            brand=np.array([(i.brand or "").lower() if i is not None else "" for i in found], dtype=object),
            categories={c: np.asarray(rows, dtype=np.int64) for c, rows in members.items()},
            popular_order=np.argsort(-model.artifact.popularity, kind="stable").astype(np.int32))

    def mask(self, f: ItemFilter) -> np.ndarray:
        mask = self.present & self.in_stock if f.in_stock else self.present.copy()
        if f.categories:
            chosen = np.zeros(len(mask), dtype=bool)
            for category in f.categories:
                chosen[self.categories.get(category, _NONE)] = True
            mask &= chosen
        if f.brands:
            mask &= np.isin(self.brand, list(f.brands))
        with np.errstate(invalid="ignore"):  # NaN (no price) compares false: left out
            if f.price_min is not None:
                mask &= self.price >= f.price_min
            if f.price_max is not None:
                mask &= self.price <= f.price_max
        return mask


_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Allowed:
    """A filter applied to one model and catalogue: what the scenarios may show."""

    filter: ItemFilter
    catalogue: Catalogue
    columns: Columns | None
    mask: np.ndarray  # bool (model items,)
    flags: bytes  # the mask as one byte per item (engine.ranking.stored serves with it)
    penalty: np.ndarray  # float32: 0, or -inf where not allowed
    popular_order: np.ndarray  # int32: allowed model items by popularity, best first

    def test(self, item_id: str) -> bool:
        """The same as the mask, for any item id (the model may not know it)."""
        items = self.catalogue.items
        if not items:  # no catalogue: nothing to test fields against
            return not self.filter.names_fields
        item = items.get(item_id)
        return item is not None and self.filter.matches(item)

    def category_items(self, category: str) -> np.ndarray:
        """Allowed items in ``category`` or below it, by popularity."""
        if self.columns is None:
            return self.popular_order[:0]
        member = np.zeros(len(self.mask), dtype=bool)
        member[self.columns.categories.get(category, _NONE)] = True
        return self.popular_order[member[self.popular_order]]


def _build(model: ServedModel | None, catalogue: Catalogue, item_filter: ItemFilter) -> Allowed:
    if model is None:  # the scenarios that read the mask need a model: only the per-item test is used
        none = np.zeros(0, dtype=np.int32)
        return Allowed(item_filter, catalogue, None, none.astype(bool), b"", none.astype(np.float32), none)
    if catalogue.items:
        columns = _columns(model, catalogue)
        mask = columns.mask(item_filter)
        if item_filter.attributes:  # rare, and not columnar: tested on the items left
            rows = np.flatnonzero(mask)
            keep = [item_filter.matches(catalogue.items[model.item_ids[j]]) for j in rows.tolist()]
            mask[rows[~np.asarray(keep, dtype=bool)]] = False
        order = columns.popular_order
    else:
        columns = None
        mask = np.full(model.n_items, not item_filter.names_fields, dtype=bool)
        order = np.argsort(-model.artifact.popularity, kind="stable").astype(np.int32)
    return Allowed(item_filter, catalogue, columns, mask, mask.tobytes(),
                   np.where(mask, np.float32(0), np.float32(-np.inf)).astype(np.float32), order[mask[order]])


def _columns(model: ServedModel, catalogue: Catalogue) -> Columns:
    """The catalogue's columns in the model's item order, kept with the snapshot for the live model."""
    cached = catalogue.derived.get(Columns)
    if cached is not None and cached[0] == model.version:
        return cached[1]
    columns = Columns.of(model, catalogue)
    catalogue.derived[Columns] = (model.version, columns)
    return columns


_cache: OrderedDict[tuple[str, int, ItemFilter], Allowed] = OrderedDict()
_lock = Lock()


def allowed(model: ServedModel | None, catalogue: Catalogue, item_filter: ItemFilter) -> Allowed:
    """``item_filter`` on this model and catalogue version, built on first use (numpy operations
    on the catalogue's columns) and kept for the next requests with the same filter."""
    key = (model.version if model else "", catalogue.version, item_filter)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit.catalogue is catalogue:
            _cache.move_to_end(key)
            return hit
    built = _build(model, catalogue, item_filter)
    with _lock:
        _cache[key] = built
        while len(_cache) > CACHED_FILTERS:
            _cache.popitem(last=False)
    return built
