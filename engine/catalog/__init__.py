"""The product catalogue: stored in Redis, served from an in-memory snapshot.

Admins upsert and delete items (``PUT/DELETE /v1/items``, ``vitrine import --items``); every
change bumps a version counter, and each API process or worker reloads its snapshot when it sees
a new version (``CatalogueCache.refresh``). Requests never read the catalogue from Redis. A
reload parses and validates the items in a thread (100k items take about half a second), then
lets the engine prepare what depends on the catalogue, in a thread too, and only then swaps it
in: the event loop keeps serving requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, field_validator
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from engine.store import keys
from engine.events.schema import ID_PATTERN

CATEGORY_PATTERN = r"^[^.\s][^.]*(\.[^.]+)*$"
log = logging.getLogger(__name__)


class ItemInfo(NamedTuple):
    """What the profiles need to know of an item: where interest in it goes."""

    category: str | None
    brand: str | None
    price: float | None


ItemLookup = Callable[[str], ItemInfo | None]


class Item(BaseModel):
    """One product. ``category`` is a dotted path, most general first: ``home.kitchen.mugs``.
    Numbers and booleans must be sent as such (Strict*), as the schema says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str = Field(pattern=ID_PATTERN)
    title: str = Field("", max_length=300)
    category: str | None = Field(None, max_length=200, pattern=CATEGORY_PATTERN)
    brand: str | None = Field(None, max_length=100)
    price: StrictFloat | None = Field(None, ge=0, le=1e9)
    in_stock: StrictBool = True
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    added_at: StrictFloat | None = Field(None, description="When the item entered the catalogue (unix s).")

    @field_validator("category")
    @classmethod
    def _normalise_category(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None

    @field_validator("attributes")
    @classmethod
    def _small_attributes(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) > 50:
            raise ValueError("at most 50 attributes")
        return attrs


@dataclass(frozen=True)
class Catalogue:
    """An immutable snapshot; swapping the reference is how a new version goes live."""

    version: int
    items: dict[str, Item]
    # Bumped by every change that makes an item recommendable (a new item, one back in stock),
    # not by the rest (prices, titles, stock-outs, deletions): a for-you list ranked before such a
    # change is still exact once the now unavailable items are dropped (engine.ranking.stored).
    grown: int = 0
    # What is computed from this snapshot alone (its content index, filter columns, category counts),
    # kept with it: it goes when the snapshot does, and each shop of a process has its own.
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def info(self, item_id: str) -> ItemInfo | None:
        item = self.items.get(item_id)
        if item is None:
            return None
        return ItemInfo(item.category, item.brand, item.price)

    def may_name(self, item_id: str) -> bool:
        """Rules validation: an item a pin or a promotion names must be in the catalogue, if the
        shop has sent one at all."""
        return not self.items or item_id in self.items

    def is_available(self, item_id: str) -> bool:
        """Recommendable: in stock, and in the catalogue if the shop has sent one at all."""
        if not self.items:
            return True
        item = self.items.get(item_id)
        return item is not None and item.in_stock


EMPTY = Catalogue(version=0, items={})


Change = tuple["Item | None", "Item"]  # an item before (None: new) and after a write


async def upsert_items(redis: Redis, items: Iterable[Item]) -> int:
    """``upsert_changes``, counting the items stored."""
    return (await upsert_changes(redis, items))[0]


async def upsert_changes(redis: Redis, items: Iterable[Item], *,
                         record: Callable[[Pipeline, list[Change]], None] | None = None) -> tuple[int, list[Change]]:
    """Store items and bump the version, and the growth counter if an item becomes recommendable.

    An item stored already changes only in the fields it was given (``merged``), so a partial
    update (``{"item_id": "A", "in_stock": false}``) never wipes the others. The read of what is
    stored and the write are one optimistic transaction: a concurrent change to the catalogue makes
    it start again, so no change is lost and no growth goes uncounted. Also returns each item whose
    stored record this write changed, before and after, read in that transaction: each change is
    seen by exactly one write (catalogue-driven triggers rely on it). ``record`` queues more
    writes on that transaction with the changes (``engine.triggers.catalogue``' outbox), so they
    commit with the items or not at all."""
    items = list(items)
    if not items:
        return 0, []
    ids = [i.item_id for i in items]
    k = keys.catalogue_keys(isinstance(redis, RedisCluster))
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(k.items)
                existing = await pipe.hmget(k.items, ids)
                mapping, grows = await asyncio.to_thread(_stored, items, existing, time.time())
                changes = await asyncio.to_thread(_changes, ids, existing, mapping)
                pipe.multi()
                pipe.hset(k.items, mapping=mapping)
                pipe.incr(k.version)
                if grows:
                    pipe.incr(k.grown)
                if record is not None and changes:
                    record(pipe, changes)
                await pipe.execute()
                return len(mapping), changes
            except WatchError:
                continue


def merged(item: Item, stored: dict[str, Any] | None) -> Item:
    """``item`` over the ``stored`` one: the fields it was given (``model_fields_set``, also when
    given as null) replace the stored values, the others keep them. A stored item keeps its first
    ``added_at`` unless one is given."""
    if stored is None:
        return item
    given = item.model_dump(include=item.model_fields_set)
    if given.get("added_at") is None:
        given.pop("added_at", None)
    return Item.model_validate({**stored, **given})


def _stored(items: list[Item], existing: list[bytes | None], now: float) -> tuple[dict[str, bytes], bool]:
    """What to store per item id, and whether an item in stock was absent or out of stock before."""
    mapping: dict[str, bytes] = {}
    grows = False
    for item, raw in zip(items, existing):
        stored = orjson.loads(raw) if raw else None
        # An item named twice in one upsert: the second applies over the first.
        after = merged(item, orjson.loads(mapping[item.item_id]) if item.item_id in mapping else stored)
        grows = grows or (after.in_stock and (stored is None or not stored.get("in_stock", True)))
        data = after.model_dump(exclude_none=True)
        data["added_at"] = after.added_at or now
        mapping[item.item_id] = orjson.dumps(data)
    return mapping, grows


def _changes(ids: list[str], existing: list[bytes | None], mapping: dict[str, bytes]) -> list[Change]:
    before = {i: orjson.loads(raw) for i, raw in zip(ids, existing) if raw}
    out: list[Change] = []
    for item_id, raw in mapping.items():
        after = orjson.loads(raw)
        old = before.get(item_id)
        if old != after:
            out.append((Item.model_validate(old) if old is not None else None, Item.model_validate(after)))
    return out


async def delete_items(redis: Redis, item_ids: Iterable[str]) -> int:
    item_ids = list(item_ids)
    if not item_ids:
        return 0
    k = keys.catalogue_keys(isinstance(redis, RedisCluster))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(k.items, *item_ids)
        pipe.incr(k.version)
        pipe.hlen(k.items)
        deleted, _, left = await pipe.execute()
    if not left:  # no catalogue at all: every item of the model is recommendable again
        await redis.incr(k.grown)
    return int(deleted)


async def load_catalogue(redis: Redis) -> Catalogue:
    k = keys.catalogue_keys(isinstance(redis, RedisCluster))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(k.version)
        pipe.get(k.grown)
        pipe.hgetall(k.items)
        version, grown, raw = await pipe.execute()
    return await asyncio.to_thread(parse_catalogue, int(version or 0), raw, int(grown or 0))


async def item_ids(redis: Redis) -> set[str]:
    """The ids of the catalogue's items (empty: the shop has sent no catalogue)."""
    items = keys.catalogue_keys(isinstance(redis, RedisCluster)).items
    return {item_id.decode() for item_id in await redis.hkeys(items)}


def parse_catalogue(version: int, raw: dict[bytes, bytes], grown: int = 0) -> Catalogue:
    return Catalogue(version=version, items={k.decode(): Item.model_validate_json(v) for k, v in raw.items()},
                     grown=grown)


class CatalogueCache:
    """Holds the current snapshot and reloads it when the version in Redis moves."""

    def __init__(self, redis: Redis, prepare: Callable[[Catalogue], None] | None = None) -> None:
        """``prepare`` runs in a thread on a new snapshot before it goes live."""
        self._redis = redis
        self._version_key = keys.catalogue_keys(isinstance(redis, RedisCluster)).version
        self.current: Catalogue = EMPTY
        self._prepare = prepare
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Reload if the catalogue changed; True when a new snapshot went live."""
        async with self._lock:
            version = int(await self._redis.get(self._version_key) or 0)
            if version == self.current.version and (version or not self.current.items):
                return False
            catalogue = await load_catalogue(self._redis)
            if self._prepare is not None:
                try:
                    await asyncio.to_thread(self._prepare, catalogue)
                except Exception:  # noqa: BLE001 - requests build what they need themselves
                    log.exception("preparing catalogue version %d failed", catalogue.version)
            self.current = catalogue  # the swap: one reference assignment
            return True

    def info(self, item_id: str) -> ItemInfo | None:
        return self.current.info(item_id)
