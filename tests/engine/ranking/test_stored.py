"""For-you lists stored when events are applied (engine.ranking.stored): a request serves exactly what
it would have computed, and only while everything the list was computed from still holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import msgpack
import pytest
import redis.asyncio

from engine.store import keys

from engine.ranking import scenarios, stored
from engine.catalog import Item, delete_items, load_catalogue, upsert_items
from engine.events.schema import Event
from engine.ingest.importer import ImportReport, read_items
from engine.profiles.preferences import Declared
from engine.profiles.shapes import VisitorProfile
from engine.ranking.request import RecoRequest
from engine.runtime import Engine
from engine.ranking.request import Pick
from load_tests.sessions import sessions_from_baskets
from tests.conftest import make_settings


@pytest.fixture
def with_engine(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]
                ) -> Callable[[Callable[[Engine], Awaitable[None]]], None]:
    """Runs a test body with a started Engine (demo catalogue in Redis, the trained model)."""
    def run(body: Callable[[Engine], Awaitable[None]]) -> None:
        async def main() -> None:
            client = redis.asyncio.Redis.from_url(redis_url)
            await upsert_items(client, read_items(demo_files[0], ImportReport()))
            await client.aclose()
            eng = Engine(make_settings(data_dir, redis_url), redis_url)
            await eng.start()
            try:
                assert eng.models.current is not None
                await body(eng)
            finally:
                await eng.stop()
        asyncio.run(main())
    return run


async def browse(eng: Engine, visitor_id: str, session: list[tuple[str, str]], start: float, tag: str = "") -> None:
    await eng.applier.apply([Event(event_id=f"{visitor_id}-{tag}{k}", type=etype, visitor_id=visitor_id,  # type: ignore[arg-type]
                                   item_id=item, ts=start + 20 * k, rt=start + 20 * k)
                             for k, (etype, item) in enumerate(session)])
    await eng.precomputer.flush()  # lists are stored in the background


async def lists(eng: Engine, visitor_id: str, now: float | None = None, **kw: object) -> list[tuple[str, float, str]]:
    """The home placement's (items, scores, reasons)."""
    body = await eng.recommender.recommend(RecoRequest(placement="home", visitor_id=visitor_id, **kw), now=now)  # type: ignore[arg-type]
    return [(i["item_id"], i["score"], i["reason"]) for i in body["items"]]


async def stored_list(eng: Engine, visitor_id: str) -> bytes | None:
    return await eng.redis.get(keys.for_you(visitor_id))


def test_stored_lists_are_exactly_the_live_ones(with_engine, demo_files: tuple[Path, Path]) -> None:  # noqa: ANN001
    """40 real baskets browsed: every placement size gives the same items, scores and reasons from
    the stored list as computed on the spot (sizes above the stored 20 are computed live)."""
    with_engine(lambda engine: _exactly_live(engine, sessions_from_baskets(demo_files[1], 40, seed=3)))


async def _exactly_live(engine: Engine, sessions: list[list[tuple[str, str]]]) -> None:
    start = time.time() - 300
    for n, session in enumerate(sessions):
        await browse(engine, f"pc{n}", session, start)
    for n in range(len(sessions)):
        vid = f"pc{n}"
        raw = await stored_list(engine, vid)
        assert raw is not None and 0 < await engine.redis.ttl(keys.for_you(vid)) <= engine.settings.session_timeout_s
        served = {size: await lists(engine, vid, n=size) for size in (1, 5, 10, 20, 30)}
        await engine.redis.delete(keys.for_you(vid))
        for size, got in served.items():
            assert got == await lists(engine, vid, n=size), (vid, size)
        assert any(reason.startswith("because_you_") for _, _, reason in served[10])


async def tamper(eng: Engine, visitor_id: str) -> list[tuple[str, float, str]]:
    """Store the visitor's list reversed, under its own digest: what a request then serves shows
    whether it used the stored list."""
    stamp, complete, items, scores, reason_ids, *reasons = msgpack.unpackb(await stored_list(eng, visitor_id))
    size = len(reason_ids)
    flip = lambda raw, width: b"".join(raw[i:i + width] for i in range(len(raw) - width, -1, -width))  # noqa: E731
    await eng.redis.set(keys.for_you(visitor_id), msgpack.packb(
        [stamp, complete, flip(items, len(items) // size), flip(scores, 4), reason_ids[::-1], *reasons]))
    assert size == stored.LIST_SIZE
    return await lists(eng, visitor_id, n=5)


def test_a_stored_list_is_used_only_while_its_inputs_hold(with_engine, demo_files: tuple[Path, Path],  # noqa: ANN001
                                                          redis_url: str) -> None:
    session = sessions_from_baskets(demo_files[1], 1, seed=11)[0]

    async def body(engine: Engine) -> None:
        start = time.time() - 300
        await browse(engine, "pv", session, start)
        live = await lists(engine, "pv", n=5)
        served = await tamper(engine, "pv")
        assert served != live and served[0][1] <= served[-1][1]  # the tampered (ascending) list was served
        # Another customer id than the cookie's: computed live.
        assert await lists(engine, "pv", n=5, customer_id="someone") != served
        # The visit timed out: the list was computed for a visit under way.
        later = start + 20 * len(session) + engine.settings.session_timeout_s + 60
        assert await lists(engine, "pv", n=5, now=later) != served
        await engine.precomputer.flush()  # that miss had the list made again, at the real time
        served = await tamper(engine, "pv")
        assert await lists(engine, "pv", n=5) == served
        # Catalogue changes that make nothing recommendable (a price) keep the list in use; an item
        # of it going out of stock is dropped from it; one coming back makes it unusable.
        items = engine.catalogue.current.items
        await upsert_items(engine.redis, [items[session[0][1]].model_copy(update={"price": 1.0})])
        await engine.catalogue.refresh()
        assert await lists(engine, "pv", n=5) == served
        gone = items[served[1][0]]
        await upsert_items(engine.redis, [gone.model_copy(update={"in_stock": False})])
        await engine.catalogue.refresh()
        assert await lists(engine, "pv", n=4) == [served[0], *served[2:]]
        await upsert_items(engine.redis, [gone])
        await engine.catalogue.refresh()
        assert await lists(engine, "pv", n=5) == live
        # A profile changed by a process that stores no lists (a worker without a model).
        await browse(engine, "pv", [("product_view", session[1][1])], time.time(), tag="x")
        served = await tamper(engine, "pv")
        assert await lists(engine, "pv", n=5) == served
        worker = Engine(engine.settings, redis_url, serve_models=False)
        await worker.catalogue.refresh()
        await browse(worker, "pv", [("product_view", session[2][1])], time.time(), tag="w")
        await worker.stop()
        assert await stored_list(engine, "pv") is not None  # still there, but no longer matching
        assert await lists(engine, "pv", n=5) != served

    with_engine(body)


def test_a_request_that_found_no_list_has_it_made_again(with_engine, demo_files: tuple[Path, Path]) -> None:  # noqa: ANN001
    """After a new model or an item back in stock no list matches: the first request scores and
    has the list made again, so the next ones use it, also one naming the customer the cookie is
    linked to. Not for a customer the cookie is not linked to, nor for a first-time visitor: the
    list made would not match them either."""
    async def body(engine: Engine) -> None:
        await browse(engine, "pr", sessions_from_baskets(demo_files[1], 1, seed=13)[0], time.time() - 60)
        made = await stored_list(engine, "pr")
        await engine.redis.delete(keys.for_you("pr"))
        await lists(engine, "pr", customer_id="c-pr")
        await engine.precomputer.flush()
        assert await stored_list(engine, "pr") is None
        live = await lists(engine, "pr", n=5)
        await engine.precomputer.flush()
        assert await stored_list(engine, "pr") == made
        served = await tamper(engine, "pr")
        assert served != live and await lists(engine, "pr", n=5) == served
        await lists(engine, "first-time")
        await engine.precomputer.flush()
        assert await stored_list(engine, "first-time") is None
        await engine.applier.apply([Event(event_id="pr-login", type="login", visitor_id="pr",  # type: ignore[arg-type]
                                          customer_id="c-pr", ts=time.time(), rt=time.time())])
        await engine.precomputer.flush()
        linked = await stored_list(engine, "pr")
        assert linked is not None
        await engine.redis.delete(keys.for_you("pr"))
        await lists(engine, "pr", customer_id="c-pr")
        await engine.precomputer.flush()
        assert await stored_list(engine, "pr") == linked

    with_engine(body)


def test_a_stored_list_serves_while_the_catalogue_has_new_items(with_engine,  # noqa: ANN001
                                                                demo_files: tuple[Path, Path]) -> None:
    """A new item alike the person's items takes the list's exploration slot on the stored list as it
    does on the live one: new items do not send every request back to scoring."""
    session = sessions_from_baskets(demo_files[1], 1, seed=17)[0]

    async def body(engine: Engine) -> None:
        await browse(engine, "pn", session, time.time() - 300)
        anchor = engine.catalogue.current.items[session[-1][1]]
        await upsert_items(engine.redis, [anchor.model_copy(update={"item_id": "NEW-PN"})])
        await engine.catalogue.refresh()
        live = await lists(engine, "pn", n=10)
        assert live[-1][0] == "NEW-PN" and live[-1][2].startswith("similar_content:")
        await engine.precomputer.flush()  # the catalogue grew: that request had the list made again
        await tamper(engine, "pn")
        served = await lists(engine, "pn", n=10)
        assert served[-1] == ("NEW-PN", served[-2][1], live[-1][2])  # explored on the stored list
        assert served[:9] != live[:9] and served[0][1] <= served[8][1]  # the tampered (ascending) list
        # The new items alike the person's were stored with the list: a request does not look again.
        raw = msgpack.unpackb(await stored_list(engine, "pn"))
        assert raw[7][:2] == ["NEW-PN", live[-1][2]]
        raw[7][1] = "similar_content:stored"
        await engine.redis.set(keys.for_you("pn"), msgpack.packb(raw))
        assert (await lists(engine, "pn", n=10))[-1] == ("NEW-PN", served[-2][1], "similar_content:stored")
        # Declared interests rank the list on the spot, from the stored one: the kept new items explore.
        category = engine.catalogue.current.items[session[0][1]].category
        await engine.redis.set(keys.visitor_preferences("pn"), Declared(categories=[category]).encode())
        declared = {item: reason for item, _, reason in await lists(engine, "pn", n=10)}
        assert declared["NEW-PN"] == "similar_content:stored" and "declared_interest" in declared.values()
        await engine.redis.delete(keys.visitor_preferences("pn"))
        # Another of the newest new items deleted: the person's could be others now, they are looked for.
        newest = engine.models.current.view(engine.catalogue.current).new_items
        assert len(newest) > scenarios.NEWEST  # the demo catalogue, loaded after training
        await delete_items(engine.redis, [newest[1]])
        await engine.catalogue.refresh()
        assert (await lists(engine, "pn", n=10))[-1] == ("NEW-PN", served[-2][1], live[-1][2])
        await engine.redis.delete(keys.for_you("pn"))
        assert await lists(engine, "pn", n=10) == live
        await engine.precomputer.flush()
        await tamper(engine, "pn")
        await upsert_items(engine.redis, [anchor.model_copy(update={"item_id": "NEW-PN", "in_stock": False})])
        await engine.catalogue.refresh()  # out of stock: the stored list still serves, without it
        without = await lists(engine, "pn", n=10)
        assert without[:9] == served[:9] and len(without) == 10 and "NEW-PN" not in {i for i, _, _ in without}

    with_engine(body)


def test_lists_can_be_switched_off(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]) -> None:
    """VITRINE_STORE_LISTS=false: events are applied without storing lists, requests score."""
    async def main() -> None:
        eng = Engine(make_settings(data_dir, redis_url, store_lists=False), redis_url)
        await eng.start()
        try:
            await browse(eng, "po", sessions_from_baskets(demo_files[1], 1, seed=23)[0], time.time() - 60)
            assert await stored_list(eng, "po") is None
            assert (await lists(eng, "po"))[0][2].startswith("because_you_")
        finally:
            await eng.stop()

    asyncio.run(main())


def test_withdrawing_consent_deletes_the_stored_list(with_engine, demo_files: tuple[Path, Path]) -> None:  # noqa: ANN001
    async def body(engine: Engine) -> None:
        await browse(engine, "pw", sessions_from_baskets(demo_files[1], 1, seed=5)[0], time.time() - 60)
        assert await stored_list(engine, "pw") is not None
        await engine.applier.apply([Event(event_id="pw-off", type="consent", visitor_id="pw",  # type: ignore[arg-type]
                                          properties={"granted": False}, ts=time.time(), rt=time.time())])
        await engine.precomputer.flush()
        assert await stored_list(engine, "pw") is None

    with_engine(body)


def test_the_digest_covers_model_catalogue_settings_and_profile() -> None:
    class Versioned:
        def __init__(self, version: object) -> None:
            self.version = version

    class Grown:
        def __init__(self, grown: int) -> None:
            self.grown = grown

    base = dict(model=Versioned("m1"), catalogue=Grown(3), config="1118000", customer_id=None,
                raw_visitor=b"profile", raw_customer=b"")
    stamp = stored.digest(**base)  # type: ignore[arg-type]
    assert stamp == stored.digest(**base)  # type: ignore[arg-type]
    for change in (dict(model=Versioned("m2")), dict(catalogue=Grown(4)), dict(config="0118000"),
                   dict(customer_id="c1"), dict(raw_visitor=b"profilf"), dict(raw_customer=b"c"),
                   dict(raw_visitor=b"profile" + b"x", raw_customer=b""),
                   dict(raw_visitor=b"profil", raw_customer=b"e")):
        assert stored.digest(**{**base, **change}) != stamp, change  # type: ignore[arg-type]


def test_a_failing_list_store_does_not_fail_the_events(with_engine, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    async def body(engine: Engine) -> None:
        async def broken(visitor_ids: list[str]) -> None:
            raise ConnectionError("store down")

        engine.precomputer.refresh = broken  # type: ignore[method-assign]
        stats = await engine.applier.apply([Event(event_id="pf-1", type="product_view", visitor_id="pf",  # type: ignore[arg-type]
                                                  item_id="85123A", ts=time.time(), rt=time.time())])
        assert stats.applied == 1
        await engine.precomputer.flush()
        assert await stored_list(engine, "pf") is None
        assert (await lists(engine, "pf"))[0][2] == "because_you_viewed:85123A"  # computed live

    with_engine(body)
    assert "storing for-you lists of 1 visitors failed (ConnectionError: store down)" in caplog.text


def test_events_for_one_visitor_in_quick_succession_leave_the_list_of_the_last(with_engine,  # noqa: ANN001
                                                                               demo_files: tuple[Path, Path]) -> None:
    session = sessions_from_baskets(demo_files[1], 1, seed=17)[0]

    async def body(engine: Engine) -> None:
        start = time.time() - 300
        for k, (etype, item) in enumerate(session):  # no flush in between: the backlog merges them
            await engine.applier.apply([Event(event_id=f"pq-{k}", type=etype, visitor_id="pq",  # type: ignore[arg-type]
                                              item_id=item, ts=start + k, rt=start + k)])
        await engine.precomputer.flush()
        served = await tamper(engine, "pq")  # matches the profile as the last event left it
        assert served[0][1] <= served[-1][1]
        await engine.redis.delete(keys.for_you("pq"))
        assert served != await lists(engine, "pq", n=5)

    with_engine(body)


def test_the_growth_counter_moves_only_when_an_item_becomes_recommendable(redis_url: str) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        items = [Item(item_id=f"grow-{time.time_ns()}-{n}", title="mug", price=4.0) for n in range(3)]
        base = int(await client.get(keys.CATALOGUE_GROWN) or 0)

        async def grown_by(change: Awaitable[object]) -> int:
            before = int(await client.get(keys.CATALOGUE_GROWN) or 0)
            await change
            return int(await client.get(keys.CATALOGUE_GROWN) or 0) - before

        assert await grown_by(upsert_items(client, items)) == 1  # new items
        assert await grown_by(upsert_items(client, [items[0].model_copy(update={"price": 9.5})])) == 0
        assert await grown_by(upsert_items(client, [items[1].model_copy(update={"in_stock": False})])) == 0
        assert await grown_by(delete_items(client, [items[2].item_id])) == 0
        # back in stock (an item stored already changes only in the fields it is given)
        assert await grown_by(upsert_items(client, [items[1].model_copy(update={"in_stock": True})])) == 1
        assert await grown_by(upsert_items(client, [items[2].model_copy(update={"in_stock": False})])) == 0
        # Concurrent writers: each transaction that saw the catalogue change under it starts again.
        more = [Item(item_id=f"{items[0].item_id}-c{n}", title="lamp") for n in range(10)]
        assert await grown_by(asyncio.gather(*(upsert_items(client, [item]) for item in more))) == 10
        catalogue = await load_catalogue(client)
        assert catalogue.grown == base + 12 and all(item.item_id in catalogue.items for item in more)
        await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("n_items", [300, 70_000])  # 16-bit indices, then 32-bit ones
def test_a_list_reads_back_as_it_was_written(n_items: int) -> None:
    item_ids = [f"i{n}" for n in range(n_items)]
    model = SimpleNamespace(item_ids=item_ids, item_index={item: n for n, item in enumerate(item_ids)})
    picks = [Pick(item_ids[-1], 0.75, f"because_you_viewed:{item_ids[3]}"),
             Pick(item_ids[7], 0.5, f"because_you_carted:{item_ids[-2]}"),
             Pick(item_ids[2], 0.25, "for_you"),
             Pick(item_ids[9], 0.125, "because_you_viewed:not-in-the-model"),
             Pick(item_ids[5], 0.0625, f"because_you_viewed:{item_ids[3]}")]
    raw = stored.encode(b"stamp123", stored.Visit(True, 1000), picks, True, model)  # type: ignore[arg-type]
    assert stored.decode(raw, b"another!", 1000, 1800) is None
    stored_list = stored.decode(raw, b"stamp123", 1000, 1800)
    assert stored_list is not None and stored_list.complete
    assert stored_list.serve(item_ids, b"\x01" * n_items, set(), 10) == picks
    in_stock = bytearray(b"\x01" * n_items)
    in_stock[7] = 0  # out of stock since: the rest keep their order and reasons (a complete list)
    assert stored_list.serve(item_ids, bytes(in_stock), {item_ids[2]}, 10) == [picks[0], picks[3], picks[4]]
    assert stored.decode(b"\x93not ours", b"stamp123", 1000, 1800) is None


def test_the_new_items_kept_with_a_list_serve_while_enough_are_in_stock() -> None:
    model = SimpleNamespace(item_ids=["a", "b"], item_index={"a": 0, "b": 1})
    new = [("n1", "similar_content:a"), ("n2", "similar_content:b"), ("n3", "similar_content:a")]
    for complete in (True, False):
        raw = stored.encode(b"s", stored.Visit(False, None), [Pick("a", 1.0, "for_you")], True, model,  # type: ignore[arg-type]
                            new, complete, "n9")
        kept = stored.decode(raw, b"s", 0, 1800)
        assert kept is not None and kept.new_window == "n9" and list(kept.new) == new
        assert kept.new_items(lambda item: item != "n1", 2) == new[1:]
        # two asked, one left in stock: known only if no other new item qualified when it was stored
        assert kept.new_items(lambda item: item == "n2", 2) == ([new[1]] if complete else None)


def test_a_list_holds_while_its_visit_stands_as_it_was() -> None:
    """A list computed during a visit serves until the visit times out; one computed after it (or
    before any) serves for as long as its profile stays as it was."""
    under_way, over, none = stored.Visit(True, 1000), stored.Visit(False, 1000), stored.Visit(False, None)
    assert under_way.holds(1000 + 1800, 1800) and not under_way.holds(1000 + 1801, 1800)
    assert under_way.holds(990, 1800)  # a clock behind the one that computed it
    assert over.holds(1000 + 1801, 1800) and over.holds(10**10, 1800) and not over.holds(1000 + 1800, 1800)
    assert none.holds(0, 1800) and none.holds(10**10, 1800)
    assert not stored.Visit(True, None).holds(1000, 1800)
    assert stored.Visit.of(VisitorProfile(visits=1, last_seen=1000.0), 1500, 1800) == under_way
    assert stored.Visit.of(VisitorProfile(visits=1, last_seen=1000.0), 3000, 1800) == over
    assert stored.Visit.of(VisitorProfile(), 3000, 1800) == none
