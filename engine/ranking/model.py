"""The model as served: a loaded artifact plus what is precomputed per catalogue version.

``ServedModel`` is immutable once built; hot swap is replacing the reference the API holds
(``ModelHolder``), so a request that started on the old model finishes on it. What depends on the
catalogue too (``CatalogueView``) is built in a thread before a new model or catalogue goes live
(``engine.runtime``), not by the first request after the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.ranking import foldin
from engine.profiles.affinity import lineage
from engine.ranking.blend import blend_scores, blend_weights, closest_anchor, top_k
from engine.catalog import Catalogue
from engine.settings import DEFAULT_BLEND
from models import artifacts, seqrules, sknn
from models.artifacts import Artifact

log = logging.getLogger(__name__)
VIEWS_KEPT = 2  # the live catalogue's and the one being prepared
_NONE = np.zeros(0, dtype=np.int32)


@dataclass
class CatalogueView:
    """Model-aligned arrays derived from one catalogue snapshot."""

    version: int
    available: np.ndarray  # bool (items,)
    # The same as bytes (0 or 1 per item), for tests of single items: indexing bytes gives an int,
    # a numpy array builds a numpy scalar each time, for every pick of every stored list served.
    available_flags: bytes
    penalty: np.ndarray  # float32 (items,): 0, or -inf where not available (added to scores)
    popular_order: np.ndarray  # int32, available items by popularity, best first
    # Every category the catalogue has, and every parent of one: its available items by
    # popularity. Built with the view, so asking for a category that does not exist (a query
    # string, an event property) costs a dict miss and leaves nothing behind.
    category_items: dict[str, np.ndarray]
    # Items the model cannot know (added after its data was read), newest first: the candidates of
    # exploration (engine.ranking.scenarios), which checks their stock. Out-of-stock ones keep their
    # place, so that one going out of stock does not change which are the newest.
    new_items: tuple[str, ...] = ()


def warm_kernels() -> None:
    """Load the compiled scoring kernels (engine.ranking.foldin, engine.ranking.blend) with the types requests use.

    numba compiles on a function's first call (seconds, once per machine: cached next to the
    source, or under ``NUMBA_CACHE_DIR``) and loads the cache on the first call in each process:
    done here, while a model loads in a thread, so no request pays for either."""
    factors = np.eye(2, dtype=np.float32)
    items, weights = np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32)
    vector = foldin.fold_in(factors, factors, factors, items, weights)
    scores = blend_scores(DEFAULT_BLEND, als=factors @ vector, recent=(items, weights), history=(items, weights),
                          neighbour_index=np.full((2, 1), -1, dtype=np.int32),
                          neighbour_score=np.zeros((2, 1), dtype=np.float32), popularity=weights[[0, 0]])
    picks, _ = top_k(scores, np.zeros(2, dtype=np.float32), items, 1)
    closest_anchor(factors, picks, items, weights)
    one = np.zeros(2, dtype=np.int64)
    sknn.scores(sknn.SessionIndex(one, items, np.zeros(1), one, items, weights), items, 1, sknn.SknnParams())
    seqrules.scores(np.full((1, 1), -1, dtype=np.int32), np.zeros((1, 1), dtype=np.float32), items, 1)


class ServedModel:
    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.version = artifact.version
        self.item_ids = artifact.item_ids
        self.item_index = {item: i for i, item in enumerate(artifact.item_ids)}
        self.user_index = {user: i for i, user in enumerate(artifact.user_ids)}
        params = artifact.meta.get("params", {}).get("als", {})
        self.alpha = float(params.get("alpha", 1.0))
        self.item_factors = np.ascontiguousarray(artifact.item_factors, dtype=np.float32)
        factors = self.item_factors
        regularization = float(params.get("regularization", 0.05))
        # What every person's fold-in shares: computed once per model, not per request.
        self._gram = (factors.T @ factors + regularization * np.eye(factors.shape[1])).astype(np.float32)
        self._solved = foldin.solved_factors(factors, self._gram)
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        self.unit_factors = factors / np.maximum(norms, np.float32(1e-9))
        # When its history was read: a person who withdrew consent later is still in it.
        self.read_at = float(artifact.meta.get("data", {}).get("read_at", 0.0))
        log_pop = np.log1p(np.maximum(artifact.popularity, 0)).astype(np.float32)
        self.popularity_prior = log_pop / max(float(log_pop.max(initial=0.0)), 1e-9)
        self.no_scores = np.zeros(len(self.item_ids), dtype=np.float32)  # ALS's when the blend leaves it out
        # How often a visit goes back to its r-th latest item (models.repeats; empty for older artifacts).
        self.repeat_curve = np.asarray(artifact.meta.get("repeat_curve") or [], dtype=np.float32)
        self.read_recipe()
        # The session index with the sessions seen since training (engine.ranking.sessions).
        self.live_index: sknn.SessionIndex | None = None
        self._views: dict[int, CatalogueView] = {}
        warm_kernels()

    def read_recipe(self) -> None:
        """What the artifact's meta says to serve with it: the blend, the session signals'
        parameters, what for-you leaves out. (Tuning re-reads it on one model, as it changes them.)"""
        recipe = self.artifact.meta.get("params", {})
        self.blend = blend_weights(self.artifact.meta)
        self.sknn = sknn.SknnParams(**{k: v for k, v in (recipe.get("sknn") or {}).items()
                                       if k in sknn.SknnParams.__dataclass_fields__})
        self.rules = seqrules.RuleParams(**{k: v for k, v in (recipe.get("rules") or {}).items()
                                            if k in seqrules.RuleParams.__dataclass_fields__})
        # What `vitrine train` chose to leave out of for-you (None: not chosen; the settings decide).
        self.exclude_seen: bool | None = recipe.get("exclude_seen")
        self.exclude_purchased: bool | None = recipe.get("exclude_purchased")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # ---------------------------------------------------------------- person vectors

    def training_row(self, user: str | None, *, by_recency: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, confidences) the person was trained with, or with ``by_recency`` the same
        decayed by age (artifacts from before that existed give the plain ones); empty for a newcomer."""
        row = self.user_index.get(user) if user else None
        if row is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        train = self.artifact.user_items
        if by_recency and self.artifact.user_recent is not None:
            train = self.artifact.user_recent
        start, end = train.indptr[row], train.indptr[row + 1]
        return train.indices[start:end], train.data[start:end]

    def fold_in(self, user: str | None, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """The person's factor vector from their training row plus what the profile adds now
        (``engine.ranking.foldin``); None for someone with neither."""
        row_items, row_weights = self.training_row(user)
        if len(row_items):
            items = np.concatenate([row_items, items])
            weights = np.concatenate([row_weights, weights])
            order = np.argsort(items, kind="stable")
            items, weights = items[order], weights[order]
            items, starts = np.unique(items, return_index=True)
            weights = np.add.reduceat(weights, starts)
        elif len(items) == 0:
            return None
        # (The profile's items are distinct: only a training row can repeat them.)
        return foldin.fold_in(self.item_factors, self._gram, self._solved, items.astype(np.int32, copy=False),
                              np.float32(self.alpha) * weights.astype(np.float32, copy=False))

    def scores(self, user_vector: np.ndarray) -> np.ndarray:
        return self.item_factors @ user_vector

    # ---------------------------------------------------------------- catalogue alignment

    def view(self, catalogue: Catalogue) -> CatalogueView:
        """Arrays for this catalogue version, built once per version (not per request)."""
        view = self._views.get(catalogue.version)
        if view is not None:
            return view
        if catalogue.items:
            available = np.fromiter((catalogue.is_available(i) for i in self.item_ids), dtype=bool,
                                    count=self.n_items)
        else:
            available = np.ones(self.n_items, dtype=bool)
        order = np.argsort(-self.artifact.popularity, kind="stable").astype(np.int32)
        penalty = np.where(available, np.float32(0), np.float32(-np.inf)).astype(np.float32)
        popular_order = order[available[order]]
        view = CatalogueView(version=catalogue.version, available=available, available_flags=available.tobytes(),
                             penalty=penalty, popular_order=popular_order,
                             category_items=self._by_category(catalogue, popular_order),
                             new_items=self._new_items(catalogue))
        # Built in a thread while requests read: replace the dict, never change it in place.
        self._views = dict([*self._views.items(), (catalogue.version, view)][-VIEWS_KEPT:])
        return view

    def _by_category(self, catalogue: Catalogue, popular_order: np.ndarray) -> dict[str, np.ndarray]:
        members: dict[str, list[int]] = {}
        lineages: dict[str, tuple[str, ...]] = {}
        items, ids = catalogue.items, self.item_ids
        for i in popular_order.tolist():
            item = items.get(ids[i])
            if item is None or not item.category:
                continue
            path = lineages.get(item.category)
            if path is None:
                path = lineages[item.category] = lineage(item.category)
            for category in path:
                members.setdefault(category, []).append(i)
        return {c: np.asarray(found, dtype=np.int32) for c, found in members.items()}

    def _new_items(self, catalogue: Catalogue) -> tuple[str, ...]:
        new = [(item.added_at, item_id) for item_id, item in catalogue.items.items()
               if item.added_at is not None and item.added_at > self.read_at
               and item_id not in self.item_index]
        return tuple(item_id for _, item_id in sorted(new, reverse=True))

    def category_items(self, catalogue: Catalogue, category: str) -> np.ndarray:
        """Available items in ``category`` or below it, best sellers first (none for a category
        the catalogue does not have)."""
        return self.view(catalogue).category_items.get(category, _NONE)


class ModelHolder:
    """The model this process serves; polls ``CURRENT`` so all replicas follow a promotion."""

    def __init__(self, models_dir: Path, prepare: Callable[[ServedModel], None] | None = None) -> None:
        """``prepare`` runs in a thread on a new model before it goes live."""
        self.models_dir = models_dir
        self.current: ServedModel | None = None
        self._prepare = prepare
        self._lock = asyncio.Lock()

    async def reload(self, version: str | None = None) -> bool:
        """Load ``version`` (default: the promoted one) if it is not already served."""
        async with self._lock:
            wanted = version or artifacts.current_version(self.models_dir)
            if wanted is None or (self.current is not None and self.current.version == wanted):
                return False
            artifact = await asyncio.to_thread(artifacts.load, self.models_dir / wanted)
            model = await asyncio.to_thread(ServedModel, artifact)
            if self._prepare is not None:
                try:
                    await asyncio.to_thread(self._prepare, model)
                except Exception:  # noqa: BLE001 - requests build what they need themselves
                    log.exception("preparing model %s failed", wanted)
            self.current = model  # the swap: one reference assignment
            log.info("serving model %s (%d items)", wanted, model.n_items)
            return True
