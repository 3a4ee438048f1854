"""engine.profiles.store: reading a person's profiles from a real Redis in as few round trips as
the request allows, and reading a cookie forgotten by its customer's withdrawal as empty."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pytest
import redis.asyncio

from engine.profiles import CustomerProfile, VisitorProfile
from engine.profiles.codec import CorruptProfile, encode
from engine.profiles.store import KeyReader, Loaded, load_profiles, load_profiles_with
from engine.store import keys

T = TypeVar("T")
NOW = 1_790_000_000.0
VISITOR = VisitorProfile(first_seen=NOW - 100, last_seen=NOW, visits=1, session_start=NOW - 100,
                         session_items=["mug"], category_affinity={"kitchen": 1.0})
CUSTOMER = CustomerProfile(first_seen=NOW - 1000, last_seen=NOW, orders=2, revenue=30.0,
                           traits={"first_name": "Anne"}, visitors=["v1"])


def linked(customer_id: str = "c1", **fields: Any) -> VisitorProfile:
    return replace(VISITOR, customer_id=customer_id, **fields)


def run(redis_url: str, stored: dict[str, bytes],
        body: Callable[[KeyReader], Awaitable[T]]) -> tuple[T, list[list[str]]]:
    """Store the values, run ``body`` with a reader over a real client; return its result and
    the keys of each round trip."""
    reads: list[list[str]] = []

    async def go() -> T:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            if stored:
                await client.mset(stored)

            async def read(wanted: list[str]) -> list[bytes | None]:
                reads.append(list(wanted))
                return await client.mget(wanted)

            return await body(read)
        finally:
            await client.aclose()

    return asyncio.run(go()), reads


def test_nobody_named_costs_no_round_trip(redis_url: str) -> None:
    (visitor, customer, customer_id), reads = run(redis_url, {}, lambda read: load_profiles(read, None, None))
    assert (visitor, customer, customer_id, reads) == (VisitorProfile(), None, None, [])


def test_a_missing_profile_reads_as_a_new_visitor(redis_url: str) -> None:
    (visitor, customer, customer_id), reads = run(redis_url, {}, lambda read: load_profiles(read, "nobody", None))
    assert (visitor, customer, customer_id) == (VisitorProfile(), None, None)
    assert reads == [[keys.visitor("nobody")]]


def test_an_anonymous_visitor_is_one_round_trip(redis_url: str) -> None:
    stored = {keys.visitor("v1"): encode(VISITOR)}
    (visitor, customer, customer_id), reads = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (visitor, customer, customer_id) == (VISITOR, None, None)
    assert len(reads) == 1


def test_a_cookie_linked_to_a_customer_reads_the_customer_next(redis_url: str) -> None:
    stored = {keys.visitor("v1"): encode(linked()), keys.customer("c1"): encode(CUSTOMER)}
    (visitor, customer, customer_id), reads = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (visitor, customer, customer_id) == (linked(), CUSTOMER, "c1")
    assert reads == [[keys.visitor("v1")], [keys.customer("c1")]]


def test_a_named_customer_is_read_with_the_cookie_in_one_round_trip(redis_url: str) -> None:
    stored = {keys.visitor("v1"): encode(linked("c-other")), keys.customer("c1"): encode(CUSTOMER),
              keys.customer("c-other"): encode(CustomerProfile(orders=9))}
    (visitor, customer, customer_id), reads = run(redis_url, stored, lambda read: load_profiles(read, "v1", "c1"))
    assert (customer, customer_id) == (CUSTOMER, "c1")  # the customer the request names, not the cookie's link
    assert visitor.customer_id == "c-other"
    assert reads == [[keys.visitor("v1"), keys.customer("c1")]]


def test_a_customer_without_a_cookie(redis_url: str) -> None:
    stored = {keys.customer("c1"): encode(CUSTOMER)}
    (visitor, customer, customer_id), reads = run(redis_url, stored, lambda read: load_profiles(read, None, "c1"))
    assert (visitor, customer, customer_id) == (VisitorProfile(), CUSTOMER, "c1")
    assert reads == [[keys.customer("c1")]]


def test_a_link_to_a_customer_profile_that_is_gone_keeps_the_customer_id(redis_url: str) -> None:
    stored = {keys.visitor("v1"): encode(linked())}
    (visitor, customer, customer_id), _ = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (visitor, customer, customer_id) == (linked(), None, "c1")


def test_an_item_named_like_the_link_key_does_not_make_a_cookie_linked(redis_url: str) -> None:
    # MessagePack writes the item id "c" as the bytes of the link key: the profile is unpacked to know.
    anonymous = replace(VISITOR, session_items=["c"])
    stored = {keys.visitor("v1"): encode(anonymous)}
    (visitor, customer, customer_id), reads = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (visitor, customer, customer_id) == (anonymous, None, None)
    assert len(reads) == 1


def test_a_profile_stored_as_json_still_finds_its_customer(redis_url: str) -> None:
    stored = {keys.visitor("v1"): orjson.dumps(linked().to_json()), keys.customer("c1"): encode(CUSTOMER)}
    (visitor, customer, customer_id), _ = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (visitor, customer, customer_id) == (linked(), CUSTOMER, "c1")


def test_a_withdrawal_on_another_device_forgets_this_cookie_on_read(redis_url: str) -> None:
    withdrawn = CustomerProfile(last_seen=NOW, consent=False, withdrawals=1, withdrawn_at=NOW - 10)
    stored = {keys.visitor("v1"): encode(linked(cart={"mug": 2})), keys.customer("c1"): encode(withdrawn)}
    (visitor, customer, customer_id), _ = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert (customer, customer_id) == (withdrawn, "c1")
    assert visitor == VisitorProfile(first_seen=VISITOR.first_seen, last_seen=VISITOR.last_seen, customer_id="c1",
                                     withdrawals=1)  # when it was seen and whose it is; no behaviour
    # A cookie forgotten up to that withdrawal already (rewritten since) keeps what it did after.
    since = linked(cart={"mug": 2}, withdrawals=1)
    stored[keys.visitor("v1")] = encode(since)
    (visitor, _, _), _ = run(redis_url, stored, lambda read: load_profiles(read, "v1", None))
    assert visitor == since


def test_extra_keys_come_back_raw_in_order_in_the_same_round_trip(redis_url: str) -> None:
    stored = {keys.visitor("v1"): encode(linked()), keys.customer("c1"): encode(CUSTOMER),
              keys.exposure("v1"): b"x-bytes", "other": b"\x00\xff"}
    extra = (keys.exposure("v1"), "absent", "other")
    loaded, reads = run(redis_url, stored, lambda read: load_profiles_with(read, "v1", None, extra))
    assert loaded.extra == [b"x-bytes", None, b"\x00\xff"]
    assert (loaded.visitor, loaded.customer, loaded.customer_id) == (linked(), CUSTOMER, "c1")
    assert reads == [[keys.visitor("v1"), *extra], [keys.customer("c1")]]


def test_extra_keys_alone(redis_url: str) -> None:
    loaded, reads = run(redis_url, {"k": b"1"}, lambda read: load_profiles_with(read, None, None, ("k", "absent")))
    assert loaded.extra == [b"1", None]
    assert (loaded.visitor, loaded.customer, loaded.customer_id) == (VisitorProfile(), None, None)
    assert reads == [["k", "absent"]]


def test_the_stored_bytes_are_kept_as_read(redis_url: str) -> None:
    raw_visitor, raw_customer = encode(linked()), encode(CUSTOMER)
    stored = {keys.visitor("v1"): raw_visitor, keys.customer("c1"): raw_customer}
    loaded, _ = run(redis_url, stored, lambda read: load_profiles_with(read, "v1", None, ()))
    assert isinstance(loaded, Loaded)
    assert (loaded.raw_visitor, loaded.raw_customer) == (raw_visitor, raw_customer)
    missing, _ = run(redis_url, {}, lambda read: load_profiles_with(read, "v2", "c2", ()))
    assert (missing.raw_visitor, missing.raw_customer, missing.customer, missing.customer_id) == (b"", b"", None, "c2")


@pytest.mark.parametrize("raw", [b"{not json", b"\xc1", orjson.dumps([1, 2])])
def test_a_corrupt_profile_is_a_corrupt_profile_error(redis_url: str, raw: bytes) -> None:
    async def load(read: KeyReader) -> VisitorProfile:
        return (await load_profiles_with(read, "v1", None, ())).visitor

    with pytest.raises(CorruptProfile):
        run(redis_url, {keys.visitor("v1"): raw}, load)
