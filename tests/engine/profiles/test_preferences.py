"""engine.profiles.preferences: the stored record, the limits, wishlists folded as watches, and the
watchers index against a real Redis (entries that no longer stand are dropped as it is read)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio

from engine.events.schema import Event
from engine.profiles.codec import encode
from engine.profiles.fold import fold_event
from engine.profiles.preferences import (Declared, Owner, PreferencesIn, Watcher, bound_errors, interests_of,
                                         load, matches, save, unindex, watchers)
from engine.profiles.shapes import WATCHING, CustomerProfile, ProfileConfig, VisitorProfile
from engine.profiles.store import load_profiles_with
from engine.store import keys

T = TypeVar("T")
NOW = 1_790_000_000.0
CFG = ProfileConfig()


def run(redis_url: str, body: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.flushdb()
            return await body(client)
        finally:
            await client.aclose()
    return asyncio.run(go())


def body(**fields: object) -> PreferencesIn:
    return PreferencesIn.model_validate(fields)


def wish(item: str, visitor: str = "v1", ts: float = NOW, **fields: object) -> Event:
    return Event(event_id=f"w-{item}-{ts}", type="add_to_wishlist", visitor_id=visitor, item_id=item, ts=ts, rt=ts,
                 **fields)


def test_the_record_round_trips_as_stored() -> None:
    declared = Declared.of(body(favourite_categories=["Kitchen", "kitchen"], favourite_brands=["Acme"],
                                price_alerts=[{"item_id": "mug", "below": 9.99}], watches=["lamp", "lamp"],
                                channels={"email": True}, source="checkout"), NOW + 0.4, Declared())
    assert declared == Declared(["kitchen"], ["acme"], {"mug": 9.99}, ["lamp"], {"email": (NOW, "checkout")}, NOW,
                                "checkout")
    assert Declared.decode(declared.encode()) == declared and declared.items() == {"mug", "lamp"}
    assert Declared.decode(None) == Declared()
    # A later PUT without channels keeps their stamps; one naming a channel restamps it.
    again = Declared.of(body(channels={"push": False}), NOW + 60, declared)
    assert again.channels == {"email": (NOW, "checkout"), "push": (NOW + 60, "api")} and again.alerts == {}


def test_limits_name_the_field() -> None:
    too_many = body(favourite_brands=["a", "b", "c"], watches=["x", "y"],
                    price_alerts=[{"item_id": "m", "below": 1.0}, {"item_id": "m", "below": 2.0}])
    assert bound_errors(too_many, 2, 2) == [{"field": "favourite_brands", "message": "at most 2 entries"},
                                            {"field": "price_alerts[1].item_id", "message": "an item has one alert"}]
    assert bound_errors(too_many, 3, 1)[0] == {"field": "price_alerts", "message": "at most 1 entries"}


def test_interests_match_by_category_path_and_brand() -> None:
    categories, brands = interests_of([Declared(["kitchen"], ["acme"]), Declared(["garden", "kitchen"])])
    assert (categories, brands) == (["kitchen", "garden"], ["acme"])
    assert matches("kitchen.mugs", None, categories, brands) and matches(None, "ACME ", categories, brands)
    assert not matches("kitchenware", "other", categories, brands)


def test_a_wish_is_kept_on_the_person_and_moves_to_the_customer_at_login() -> None:
    v = VisitorProfile()
    v = fold_event(v, None, wish("mug"), lambda i: None, CFG).visitor
    v = fold_event(v, None, wish("lamp", ts=NOW + 1), lambda i: None, CFG).visitor
    assert v.watching == ["lamp", "mug"]
    login = Event(event_id="l", type="login", visitor_id="v1", customer_id="c1", ts=NOW + 2, rt=NOW + 2)
    applied = fold_event(v, CustomerProfile(watching=["vase"]), login, lambda i: None, CFG)
    assert applied.visitor.watching == [] and applied.customer.watching == ["lamp", "mug", "vase"]
    c = applied.customer
    for n in range(WATCHING + 5):
        c = fold_event(applied.visitor, c, wish(f"i{n}", ts=NOW + 3 + n), lambda i: None, CFG).customer
    assert len(c.watching) == WATCHING and c.watching[0] == f"i{WATCHING + 4}"
    withdraw = Event(event_id="no", type="consent", visitor_id="v1", ts=NOW + 99, rt=NOW + 99,
                     properties={"granted": False})
    assert fold_event(applied.visitor, c, withdraw, lambda i: None, CFG).customer.watching == []


def test_watchers_are_checked_against_the_records_and_the_index_cleans_itself(redis_url: str) -> None:
    async def scenario(r: redis.asyncio.Redis) -> tuple[list[Watcher], set[bytes], list[Watcher]]:
        alice, bob = Owner("c", "alice"), Owner("v", "bob")
        await save(r, alice, Declared(alerts={"mug": 5.0}), Declared(), ttl_s=60, watchers_max=10)
        await r.set(keys.visitor("bob"), encode(VisitorProfile(watching=["mug"])))
        await r.zincrby(keys.watchers("mug"), 1, bob.member)
        await r.zincrby(keys.watchers("mug"), 1, "v:gone")  # an entry whose person is no more
        # A cookie's wish filed before its login: the wish is now the customer's.
        await r.set(keys.visitor("carol-phone"), encode(VisitorProfile(customer_id="carol")))
        await r.set(keys.customer("carol"), encode(CustomerProfile(watching=["mug"])))
        await r.zincrby(keys.watchers("mug"), 1, "v:carol-phone")
        found = await watchers(r, "mug")
        left = set(await r.zrange(keys.watchers("mug"), 0, -1))
        # Taking the alert back, then erasing bob: both leave the index.
        await save(r, alice, Declared(), Declared(alerts={"mug": 5.0}), ttl_s=60, watchers_max=10)
        await unindex(r, [bob])
        return found, left, await watchers(r, "mug")

    found, left, after = run(redis_url, scenario)
    assert sorted(found, key=lambda w: w.person) == [Watcher("c:alice", 5.0, True), Watcher("c:carol", None, False),
                                                     Watcher("v:bob", None, False)]
    assert left == {b"c:alice", b"v:bob", b"c:carol"}
    assert after == [Watcher("c:carol", None, False)]


def test_the_index_is_bounded_per_item(redis_url: str) -> None:
    async def scenario(r: redis.asyncio.Redis) -> int:
        for n in range(5):
            await save(r, Owner("v", f"v{n}"), Declared(watches=["mug"]), Declared(), ttl_s=60, watchers_max=3)
        return int(await r.zcard(keys.watchers("mug")))

    assert run(redis_url, scenario) == 3


def test_preferences_come_in_the_profile_reads(redis_url: str) -> None:
    """The cookie's record with its profile, the customer's with theirs: no extra round trip."""
    async def scenario(r: redis.asyncio.Redis) -> tuple[list[bytes], int]:
        await r.set(keys.visitor("v1"), encode(VisitorProfile(visits=1, customer_id="c1")))
        await r.set(keys.customer("c1"), encode(CustomerProfile(visitors=["v1"])))
        await save(r, Owner("c", "c1"), Declared(categories=["garden"]), Declared(), ttl_s=60, watchers_max=3)
        await save(r, Owner("v", "v1"), Declared(brands=["acme"]), Declared(), ttl_s=60, watchers_max=3)
        reads = 0

        async def read(wanted: list[str]) -> list[bytes | None]:
            nonlocal reads
            reads += 1
            return await r.mget(wanted)

        loaded = await load_profiles_with(read, "v1", None, (), preferences=True)
        assert (await load(r, Owner("c", "c1"))).categories == ["garden"]
        return loaded.raw_preferences, reads

    raws, reads = run(redis_url, scenario)
    assert reads == 2  # the cookie, then its customer: as without preferences
    assert interests_of([Declared.decode(raw) for raw in raws]) == (["garden"], ["acme"])


def test_the_interest_index_finds_matching_people_and_cleans_itself(redis_url: str) -> None:
    from engine.profiles.preferences import interested

    async def go(r: redis.asyncio.Redis) -> tuple[list[str], list[str], set[bytes]]:
        for owner, fields in ((Owner("v", "a"), {"favourite_categories": ["kitchen"]}),
                              (Owner("c", "b"), {"favourite_brands": ["Acme"]}),
                              (Owner("v", "c"), {"favourite_categories": ["kitchenware"]}),
                              (Owner("v", "gone"), {"favourite_categories": ["kitchen.mugs"]})):
            await save(r, owner, Declared.of(body(**fields), NOW, Declared()), Declared(), ttl_s=60, watchers_max=10)
        await r.delete(Owner("v", "gone").key)  # the record expired: its entry is stale
        first = sorted(await interested(r, "kitchen.mugs", "ACME "))
        left = await r.smembers(keys.interest_category("kitchen.mugs"))
        return first, sorted(await interested(r, "garden", None)), left

    found, none, left = run(redis_url, go)
    assert found == ["c:b", "v:a"] and none == [] and left == set()
