"""Content neighbours: items alike in title, category path, brand and price band.

The model learns neighbours from behaviour, so an item nobody has interacted with yet (a new
arrival) has none until a retrain, and is never recommended before it is. What the catalogue says
of it is enough to start: each item becomes a TF-IDF vector of its title words, every level of its
category path, its brand and its price band (one per doubling of the price), and cosine similarity
between them gives a new item similar items on its own product page and a place in the similar
lists of the items it resembles (``engine.ranking.scenarios``). One index per catalogue version,
built once (``for_catalogue``). Pure but for that cache: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from threading import Lock

import numpy as np
from scipy.sparse import csr_matrix

from engine.catalog import Catalogue, Item

_WORD = re.compile(r"[^\W\d_]{3,}")


def tokens(item: Item) -> set[str]:
    """What an item is, as features: ``w:`` title words, ``c:`` category levels, ``b:`` brand,
    ``p:`` price band."""
    out = {f"w:{word}" for word in _WORD.findall(item.title.lower())}
    if item.category:
        parts = item.category.split(".")
        out.update(f"c:{'.'.join(parts[:level])}" for level in range(1, len(parts) + 1))
    if item.brand:
        out.add(f"b:{item.brand.strip().lower()}")
    if item.price is not None and item.price > 0:
        out.add(f"p:{math.floor(math.log2(item.price))}")
    return out


@dataclass(frozen=True)
class ContentIndex:
    version: int
    item_ids: list[str]
    index: dict[str, int]
    vectors: csr_matrix  # (items, features), rows L2-normalised TF-IDF
    added_at: np.ndarray  # float64 (items,): when each entered the catalogue (-inf: unknown)

    def newer_than(self, when: float) -> np.ndarray:
        """Row indices of the items added after ``when``."""
        return np.flatnonzero(self.added_at > when)

    def similar(self, item_id: str, candidates: np.ndarray | None = None, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` items most alike ``item_id`` (itself left out), best first, among the row
        indices ``candidates`` (default: all); only items sharing some feature with it."""
        row = self.index.get(item_id)
        if row is None:
            return []
        pool = self.vectors if candidates is None else self.vectors[candidates]
        scores = (pool @ self.vectors[row].T).toarray().ravel()
        ids = np.arange(len(self.item_ids)) if candidates is None else candidates
        keep = (scores > 0) & (ids != row)
        ids, scores = ids[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.item_ids[ids[o]], float(scores[o])) for o in order.tolist()]


def build(catalogue: Catalogue) -> ContentIndex:
    item_ids = list(catalogue.items)
    features: dict[str, int] = {}
    rows, cols = [], []
    for r, item_id in enumerate(item_ids):
        for token in tokens(catalogue.items[item_id]):
            rows.append(r)
            cols.append(features.setdefault(token, len(features)))
    shape = (len(item_ids), len(features))
    matrix = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(features))
    idf = np.log((1 + len(item_ids)) / (1 + df)).astype(np.float32) + 1
    matrix = csr_matrix(matrix.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = csr_matrix(matrix.multiply(1 / np.maximum(norms, 1e-9)[:, None]), dtype=np.float32)
    added_at = np.array([catalogue.items[i].added_at or -np.inf for i in item_ids], dtype=np.float64)
    return ContentIndex(catalogue.version, item_ids, {i: r for r, i in enumerate(item_ids)}, matrix, added_at)


_lock = Lock()


def for_catalogue(catalogue: Catalogue) -> ContentIndex:
    """The index of this catalogue snapshot, built on first use (the catalogue's preparation
    builds it before the snapshot goes live, ``engine.runtime``) and kept with the snapshot."""
    index = catalogue.derived.get(ContentIndex)
    if index is None:
        with _lock:
            index = catalogue.derived.get(ContentIndex)
            if index is None:
                index = catalogue.derived[ContentIndex] = build(catalogue)
    return index
