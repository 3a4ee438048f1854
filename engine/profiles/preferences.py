"""Declared preferences (explicit personalisation): what a person says they like and wants to hear
about, as opposed to what their behaviour suggests.

A record per person: favourite categories and brands, price alerts (notify below a price) and
back-in-stock watches, plus when and where each contact choice was made. The choices themselves
(email, push, on-site) are the profile's consent records (``engine.profiles.consent``), written by
consent events, so "a refusal anywhere wins" holds in one place. A wishlisted item is a watch too:
the fold keeps it on the profile (``watching``), so a profiling withdrawal forgets it with the rest
of the behaviour, while what the person declared here stays theirs until they change or erase it.

The watchers index (``w:{item}``, a sorted set of ``v:ID``/``c:ID``, scored by how many signals the
person gave) lets a catalogue change (price drop, back in stock) reach the people watching an item
without scanning profiles. Writers add to it; ``watchers`` checks each entry against the person's
records and drops the ones that no longer stand, so erasures, withdrawals and changed alerts need
no scan of the index either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat
from redis.asyncio import Redis, RedisCluster

from engine.catalog import CATEGORY_PATTERN
from engine.events.schema import CHANNELS, ID_PATTERN
from engine.profiles import consent, interests
from engine.profiles.affinity import in_category
from engine.profiles.codec import decode_dict
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.profiles.view import iso
from engine.profiles.viewers import Viewer
from engine.store import cluster, keys

SOURCE_PATTERN = r"^[\w .:/-]{1,64}$"
WATCHERS_READ = 500  # index entries checked per round trip by ``watchers``

ItemId = Annotated[str, Field(pattern=ID_PATTERN, description="A catalogue item id (unknown ids are kept).")]


class PriceAlert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: ItemId
    below: StrictFloat = Field(gt=0, le=1e9, description="Notify when the price falls below this.")


class ChannelChoices(BaseModel):
    """Being contacted, per channel: true opts in, false out; an absent channel keeps its choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: StrictBool | None = None
    push: StrictBool | None = None
    on_site: StrictBool | None = None

    def chosen(self) -> dict[str, bool]:
        return {name: value for name in CHANNELS if (value := getattr(self, name)) is not None}


class PreferencesIn(BaseModel):
    """A PUT body: it replaces the favourites, alerts and watches; channels are choices recorded on top."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    favourite_categories: list[Annotated[str, Field(min_length=1, max_length=200, pattern=CATEGORY_PATTERN)]] = Field(
        default_factory=list, description="Dotted category paths (`kitchen.mugs`); at most "
                                          "`VITRINE_PREFERENCES_MAX_FAVOURITES`.")
    favourite_brands: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, description="At most `VITRINE_PREFERENCES_MAX_FAVOURITES`.")
    price_alerts: list[PriceAlert] = Field(default_factory=list, description="One per item; at most "
                                           "`VITRINE_PREFERENCES_MAX_ALERTS`.")
    watches: list[ItemId] = Field(default_factory=list, description="Back-in-stock watches; at most "
                                  "`VITRINE_PREFERENCES_MAX_ALERTS`.")
    channels: ChannelChoices | None = None
    source: str = Field("api", pattern=SOURCE_PATTERN, description="Where the choices were made "
                        "(`account_page`, `checkout`...): kept with each channel choice.")


def bound_errors(body: PreferencesIn, max_favourites: int, max_alerts: int) -> list[dict[str, str]]:
    """The size and uniqueness limits (settings, so not in the schema), each naming its field."""
    errors = []
    for name, values, limit in (("favourite_categories", body.favourite_categories, max_favourites),
                                ("favourite_brands", body.favourite_brands, max_favourites),
                                ("price_alerts", body.price_alerts, max_alerts),
                                ("watches", body.watches, max_alerts)):
        if len(values) > limit:
            errors.append({"field": name, "message": f"at most {limit} entries"})
    seen: set[str] = set()
    for i, alert in enumerate(body.price_alerts):
        if alert.item_id in seen:
            errors.append({"field": f"price_alerts[{i}].item_id", "message": "an item has one alert"})
        seen.add(alert.item_id)
    return errors


@dataclass
class Declared:
    """A person's stored record (``pv:{visitor}`` or ``pc:{customer}``)."""

    categories: list[str] = field(default_factory=list)
    brands: list[str] = field(default_factory=list)
    alerts: dict[str, float] = field(default_factory=dict)  # item -> notify below this price
    watches: list[str] = field(default_factory=list)
    channels: dict[str, tuple[float, str]] = field(default_factory=dict)  # channel -> (chosen at, source)
    updated_at: float = 0.0
    source: str = ""

    def items(self) -> set[str]:
        """The items this record watches (alerts and watches): its entries in the watchers index."""
        return {*self.alerts, *self.watches}

    def interests(self) -> bool:
        return bool(self.categories or self.brands)

    def encode(self) -> bytes:
        return msgpack.packb({"c": self.categories, "b": self.brands,
                              "a": {k: round(v * 100) for k, v in self.alerts.items()}, "w": self.watches,
                              "k": {k: [round(t), s] for k, (t, s) in self.channels.items()},
                              "u": round(self.updated_at), "s": self.source})

    @classmethod
    def decode(cls, raw: bytes | None) -> "Declared":
        data = decode_dict(raw)
        if not data:
            return cls()
        return cls(list(data.get("c", [])), list(data.get("b", [])),
                   {k: v / 100 for k, v in data.get("a", {}).items()}, list(data.get("w", [])),
                   {k: (float(t), s) for k, (t, s) in data.get("k", {}).items()},
                   float(data.get("u", 0)), data.get("s", ""))

    @classmethod
    def of(cls, body: PreferencesIn, now: float, previous: "Declared") -> "Declared":
        """The record a PUT leaves: ``body`` replaces the favourites, alerts and watches; each channel
        it names is stamped with now and the body's source, the others keep their stamp."""
        now = float(round(now))  # as stored
        channels = dict(previous.channels)
        if body.channels is not None:
            channels.update({name: (now, body.source) for name in body.channels.chosen()})
        return cls(categories=list(dict.fromkeys(c.strip().lower() for c in body.favourite_categories)),
                   brands=list(dict.fromkeys(b.strip().lower() for b in body.favourite_brands)),
                   alerts={a.item_id: float(a.below) for a in body.price_alerts},
                   watches=list(dict.fromkeys(body.watches)), channels=channels, updated_at=now, source=body.source)

    def joined(self, other: "Declared") -> "Declared":
        """One person's record from two (a customer merge): favourites and watches together, the
        lower alert per item, and the later stamp per channel."""
        channels = dict(other.channels)
        for name, stamp in self.channels.items():
            if stamp[0] >= channels.get(name, (0.0, ""))[0]:
                channels[name] = stamp
        alerts = dict(other.alerts)
        for item, below in self.alerts.items():
            alerts[item] = min(below, alerts.get(item, below))
        later = self if self.updated_at >= other.updated_at else other
        return Declared(list(dict.fromkeys([*self.categories, *other.categories])),
                        list(dict.fromkeys([*self.brands, *other.brands])), alerts,
                        list(dict.fromkeys([*self.watches, *other.watches])), channels,
                        later.updated_at, later.source)


@dataclass(frozen=True)
class Owner:
    """Whose record: a customer's (all their devices) or an anonymous visitor's."""

    kind: Literal["v", "c"]
    id: str

    @property
    def key(self) -> str:
        return keys.customer_preferences(self.id) if self.kind == "c" else keys.visitor_preferences(self.id)

    @property
    def member(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def profile_key(self) -> str:
        return keys.customer(self.id) if self.kind == "c" else keys.visitor(self.id)

    @classmethod
    def parse(cls, member: str) -> "Owner":
        kind, _, id_ = member.partition(":")
        return cls("c" if kind == "c" else "v", id_)


def watcher_member(visitor_id: str, customer_id: str | None) -> str:
    """The index member of whoever wished for an item: the customer once known, else the cookie."""
    return Owner("c", customer_id).member if customer_id else Owner("v", visitor_id).member


async def load(redis: Redis, owner: Owner) -> Declared:
    return Declared.decode(await redis.get(owner.key))


async def save(redis: Redis, owner: Owner, new: Declared, old: Declared, *, ttl_s: int, watchers_max: int) -> None:
    """Replace the record and move its index entries (watchers, declared interests), in one
    transaction (on a Redis Cluster, where they live in different slots: ``_save_apart``)."""
    if isinstance(redis, RedisCluster):
        await _save_apart(redis, owner, new, old, ttl_s=ttl_s, watchers_max=watchers_max)
        return
    member = owner.member
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(owner.key, new.encode(), ex=ttl_s)
        interests.index(pipe, member, new, old)
        for item in old.items() - new.items():
            pipe.zrem(keys.watchers(item), member)
        for item in new.items() - old.items():
            pipe.zincrby(keys.watchers(item), 1, member)
            pipe.zremrangebyrank(keys.watchers(item), 0, -watchers_max - 1)
        await pipe.execute()


async def _save_apart(redis: RedisCluster, owner: Owner, new: Declared, old: Declared, *, ttl_s: int,
                      watchers_max: int) -> None:
    """``save`` in three steps: the index entries the new record adds, the record, then the
    entries it dropped. A crash between them leaves only extra entries, which the index readers
    drop as they check each against the record (``watchers``, engine.profiles.interests), never
    a missing one."""
    member = owner.member
    before, after = interests.index_keys(old), interests.index_keys(new)
    added, dropped = new.items() - old.items(), old.items() - new.items()
    if added or after - before:
        async with redis.pipeline(transaction=False) as pipe:
            for key in after - before:
                pipe.sadd(key, member)
            for item in added:
                pipe.zincrby(keys.watchers(item), 1, member)
                pipe.zremrangebyrank(keys.watchers(item), 0, -watchers_max - 1)
            await pipe.execute()
    await redis.set(owner.key, new.encode(), ex=ttl_s)
    if dropped or before - after:
        async with redis.pipeline(transaction=False) as pipe:
            for key in before - after:
                pipe.srem(key, member)
            for item in dropped:
                pipe.zrem(keys.watchers(item), member)
            await pipe.execute()


async def unindex(redis: Redis, owners: list[Owner]) -> None:
    """Remove every watchers-index and interest-index entry of the owners' records and of their
    profiles' wishlists (an erasure: run it before the records and profiles themselves are deleted)."""
    if not owners:
        return
    raws = await cluster.mget(redis, [*(o.key for o in owners), *(o.profile_key for o in owners)])
    async with redis.pipeline(transaction=cluster.transactions(redis)) as pipe:
        for i, owner in enumerate(owners):
            declared = Declared.decode(raws[i])
            for item in declared.items() | set(_wishlist(owner, raws[len(owners) + i])):
                pipe.zrem(keys.watchers(item), owner.member)
            interests.unindex(pipe, owner.member, declared)
        await pipe.execute()


def _wishlist(owner: Owner, raw_profile: bytes | None) -> list[str]:
    shape = CustomerProfile if owner.kind == "c" else VisitorProfile
    return shape.decode(raw_profile).watching if raw_profile else []


@dataclass(frozen=True)
class Watcher:
    person: str  # ``v:ID`` or ``c:ID``
    below: float | None  # the price alert's threshold; None for a watch without a price
    declared: bool  # asked for here (an alert or a watch), not only wishlisted
    asked: bool = True  # an alert, a watch or a wishlist; False: only viewed or carted it (engine.profiles.viewers)
    views: int = 0
    carts: int = 0


def with_viewers(watchers: list[Watcher], viewers: list[Viewer]) -> list[Watcher]:
    """The item's watchers, then the people who only viewed or carted it: what a person asked for
    (their alert's price) speaks for them over what they did."""
    asked = {w.person for w in watchers}
    return [*watchers, *(Watcher(v.person, None, False, False, v.views, v.carts) for v in viewers
                         if v.person not in asked)]


async def watchers(redis: Redis, item_id: str) -> list[Watcher]:
    """The people watching ``item_id`` now (strongest signals first), for a catalogue-driven trigger
    (price drop, back in stock) to fan out to. Each index entry is checked against the person's
    record and profile: a wishlist forgotten by a withdrawal, an erased person or an alert taken back
    is dropped from the index here. A cookie's wish filed before it logged in is re-filed under the
    customer. Whether the person may be contacted on a channel is the sender's question, asked at
    send time (``engine.profiles.consent.state``): consent can change after a watch is set."""
    index = keys.watchers(item_id)
    found: dict[str, Watcher] = {}
    start = 0
    while members := await redis.zrevrange(index, start, start + WATCHERS_READ - 1):
        start += WATCHERS_READ
        owners = [Owner.parse(m.decode() if isinstance(m, bytes) else m) for m in members]
        raws = await cluster.mget(redis, [*(o.key for o in owners), *(o.profile_key for o in owners)])
        stale, refile = [], []
        for i, owner in enumerate(owners):
            declared = Declared.decode(raws[i])
            raw_profile = raws[len(owners) + i]
            if item_id in declared.items():
                found[owner.member] = Watcher(owner.member, declared.alerts.get(item_id), True)
            elif item_id in _wishlist(owner, raw_profile):  # a withdrawal empties the wishlist
                found.setdefault(owner.member, Watcher(owner.member, None, False))
            else:
                stale.append(owner.member)
                linked = VisitorProfile.decode(raw_profile).customer_id if owner.kind == "v" and raw_profile else None
                if linked:
                    refile.append(Owner("c", linked))
        if refile:  # the cookie's wishes moved to its customer at login (engine.profiles.fold.stitch)
            raws = await cluster.mget(redis, [o.profile_key for o in refile])
            for owner, raw in zip(refile, raws):
                if item_id in _wishlist(owner, raw) and owner.member not in found:
                    found[owner.member] = Watcher(owner.member, None, False)
                    await redis.zincrby(index, 1, owner.member)
        if stale:
            await redis.zrem(index, *stale)
            start -= len(stale)
    return list(found.values())


async def interested(redis: Redis, category: str | None, brand: str | None) -> list[str]:
    """The people (``v:ID``/``c:ID``) whose declared favourites match an item of ``category`` (or
    below one of theirs) or ``brand``; stale entries are dropped from the index on the way."""
    matched = interests.item_keys(category, brand)
    if not matched:
        return []
    if isinstance(redis, RedisCluster):  # the index keys sit in slots of their own
        union = {m for key in matched for m in await redis.smembers(key)}
    else:
        union = await redis.sunion(matched)
    members = sorted({m.decode() if isinstance(m, bytes) else m for m in union})
    found: list[str] = []
    for start in range(0, len(members), WATCHERS_READ):
        chunk = [Owner.parse(m) for m in members[start:start + WATCHERS_READ]]
        raws = await cluster.mget(redis, [o.key for o in chunk])
        stale: list[tuple[Owner, Declared]] = []
        for owner, raw in zip(chunk, raws):
            declared = Declared.decode(raw)
            if matches(category, brand, declared.categories, declared.brands):
                found.append(owner.member)
            else:
                stale.append((owner, declared))
        if stale:
            async with redis.pipeline(transaction=False) as pipe:
                for owner, declared in stale:  # what the record no longer says (or nothing, gone)
                    for key in set(matched) - interests.index_keys(declared):
                        pipe.srem(key, owner.member)
                await pipe.execute()
    return found


def interests_of(records: list[Declared]) -> tuple[list[str], list[str]]:
    """Favourite categories and brands across the person's records (their cookie's and their
    customer's), customer's first."""
    if not records:  # most people: the request path asks for every for-you list
        return [], []
    categories = list(dict.fromkeys(c for r in records for c in r.categories))
    brands = list(dict.fromkeys(b for r in records for b in r.brands))
    return categories, brands


def matches(category: str | None, brand: str | None, categories: list[str], brands: list[str]) -> bool:
    """An item in a declared category (or below it) or of a declared brand."""
    return in_category(category, categories) or (brand or "").strip().lower() in brands


def describe(declared: Declared, wishlist: list[str], channel_state: dict[str, str] | None,
             used: bool) -> dict[str, Any]:
    """The record as people read it (GET, the customer views, export). ``channel_state``: the
    person's contact consent per channel (None: left out, as in an export, which has the events)."""
    channels: dict[str, dict[str, Any]] = {}
    for name in CHANNELS:
        at, source = declared.channels.get(name, (0.0, None))
        channels[name] = {"chosen_at": iso(at), "source": source}
        if channel_state is not None:
            channels[name] = {"state": channel_state.get(name, "not_given"), **channels[name]}
    return {
        "favourite_categories": declared.categories,
        "favourite_brands": declared.brands,
        "price_alerts": [{"item_id": k, "below": v} for k, v in declared.alerts.items()],
        "watches": declared.watches,
        "wishlist": wishlist,
        "channels": channels,
        "updated_at": iso(declared.updated_at),
        "source": declared.source or None,
        "used_for_personalisation": used,
    }


def readable(declared: Declared, v: VisitorProfile, c: CustomerProfile | None, required: bool) -> dict[str, Any] | None:
    """What the person declared (and wishlisted), with their contact consent per channel; None
    when there is nothing (the views show null)."""
    wishlist = c.watching if c is not None else v.watching
    if declared == Declared() and not wishlist:
        return None
    return describe(declared, wishlist, consent.state(v, c, required), not consent.withdrawn(v, c, required))
