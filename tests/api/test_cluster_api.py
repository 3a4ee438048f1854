"""The core API flow on a real three-primary Redis Cluster (tests/redis_cluster.py): catalogue in,
events in through POST /v1/events, personal recommendations out; customer merges by hand and at login
as on one Redis."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.cli.data import _replay
from engine.catalog import upsert_items
from engine.events import erased
from engine.ingest.importer import ImportReport, read_items
from engine.store import keys
from engine.store.connect import connect_cluster
from tests.conftest import ADMIN, make_settings
from tests.redis_cluster import Cluster


@pytest.fixture
def client(cluster: Cluster, data_dir: Path, demo_files: tuple[Path, Path]) -> Iterator[TestClient]:
    async def load() -> None:
        redis = connect_cluster(cluster.url, timeout_s=5)
        await redis.flushall()
        await upsert_items(redis, read_items(demo_files[0], ImportReport()))
        await redis.aclose()

    asyncio.run(load())
    settings = make_settings(data_dir, cluster.url, redis_cluster=True)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, *events: dict) -> None:
    r = client.post("/v1/events", json={"events": list(events)}, headers=ADMIN)  # customer ids: admin key
    assert r.status_code == 200, r.text


def reco(client: TestClient, **params: object) -> dict:
    r = client.get("/v1/recommendations", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "degraded" not in body, body
    return body


def test_events_in_recommendations_out(client: TestClient, cluster: Cluster) -> None:
    assert client.get("/ready").status_code == 200, client.get("/ready").text
    post(client, *[{"event_id": f"r{i}", "type": "product_view", "visitor_id": "cv", "item_id": item}
                   for i, item in enumerate(["85123A", "21232", "22423"])])
    assert [i["item_id"] for i in reco(client, placement="recent", visitor_id="cv")["items"]] == [
        "22423", "21232", "85123A"]
    home = reco(client, placement="home", visitor_id="cv", n=5)
    assert home["items"] and home["items"][0]["reason"].startswith("because_you_"), home
    # A login stitches the cookie to a customer in another slot; the customer's purchase is on both.
    post(client, {"event_id": "l1", "type": "login", "visitor_id": "cv", "customer_id": "cust-1"},
         {"event_id": "p1", "type": "purchase", "visitor_id": "cv", "customer_id": "cust-1", "item_id": "21232",
          "price": 2.5})
    assert cluster.primary_of(keys.visitor("cv")) != cluster.primary_of(keys.customer("cust-1"))
    profile = client.get("/v1/profiles/cv", headers=ADMIN).json()
    assert profile["customer_id"] == "cust-1" and profile["customer"]["orders"], profile
    # The visitor's and the customer's keys in one request: one MGET per slot, sent together.
    for params in ({"visitor_id": "cv", "customer_id": "cust-1"}, {"visitor_id": "cv"}):
        body = reco(client, placement="home", n=5, **params)
        assert "21232" not in [i["item_id"] for i in body["items"]]  # purchased: excluded
    page = client.post("/v1/page", json={"visitor_id": "cv", "placements": [
        {"placement": "home", "n": 4}, {"placement": "recent", "n": 3}]}).json()
    assert [p["items"] for p in page["placements"]][1] == reco(client, placement="recent", visitor_id="cv", n=3)["items"]
    assert all("degraded" not in p for p in page["placements"]), page
    ranked = client.post("/v1/rerank", json={"visitor_id": "cv", "items": ["85123A", "22423", "84029E"]}).json()
    assert "degraded" not in ranked and len(ranked["items"]) == 3, ranked
    # Redelivered events change nothing.
    post(client, {"event_id": "p1", "type": "purchase", "visitor_id": "cv", "customer_id": "cust-1",
                  "item_id": "21232", "price": 2.5})
    assert client.get("/v1/profiles/cv", headers=ADMIN).json()["customer"] == profile["customer"]


def test_catalogue_writes_share_one_slot(client: TestClient, cluster: Cluster) -> None:
    r = client.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "NEW-1", "title": "New",
                                                                "category": "home.decor", "price": 3.0}]})
    assert r.status_code == 200, r.text
    version = r.json()["catalogue_version"]
    r = client.request("DELETE", "/v1/items", headers=ADMIN, json={"item_ids": ["NEW-1"]})
    assert r.status_code == 200, r.text
    assert client.app.state.engine.catalogue.current.version > version
    assert len({cluster.primary_of(k).port for k in keys.catalogue_keys(True)}) == 1


def test_preferences_write_the_record_and_its_index_entries_apart(client: TestClient, cluster: Cluster) -> None:
    async def stored() -> tuple[bytes | None, list[bytes], set[bytes]]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        values = (await redis.get(keys.visitor_preferences("pv")), await redis.zrange(keys.watchers("85123A"), 0, -1),
                  await redis.smembers(keys.interest_category("home")))
        await redis.aclose()
        return values

    body = {"favourite_categories": ["home"], "watches": ["85123A"]}
    r = client.put("/v1/visitors/pv/preferences", json=body)
    assert r.status_code == 200, r.text
    got = client.get("/v1/visitors/pv/preferences").json()
    assert (got["favourite_categories"], got["watches"]) == (["home"], ["85123A"])
    record, watchers, interested = asyncio.run(stored())
    assert record and watchers == [b"v:pv"] and interested == {b"v:pv"}
    assert reco(client, placement="home", visitor_id="pv", n=5)["items"]  # reads pv:{pv} with the profile
    r = client.put("/v1/visitors/pv/preferences", json={"favourite_categories": [], "watches": []})
    assert r.status_code == 200, r.text
    record, watchers, interested = asyncio.run(stored())
    assert record and watchers == [] and interested == set()


def test_segment_counts_scan_every_primary(client: TestClient, cluster: Cluster) -> None:
    visitors = [f"sg{n}" for n in range(12)]
    assert len({cluster.primary_of(keys.visitor(v)).port for v in visitors}) == 3
    post(client, *[{"event_id": f"sg-{v}", "type": "product_view", "visitor_id": v, "item_id": "85123A"}
                   for v in visitors],
         {"event_id": "sg-buy", "type": "purchase", "visitor_id": "sg0", "customer_id": "cust-1", "item_id": "21232",
          "price": 1})
    body = client.get("/v1/admin/segments", headers=ADMIN).json()
    assert (body["sample_size"], body["total"]) == (12, 12), body
    assert body["count_method"] == "counted over all 12 visitor profiles"
    assert {s["name"]: s["count"] for s in body["segments"]}["new"] == 12


def merge_story(client: TestClient) -> dict[str, object]:
    """Two customers merged by hand and two by a login with one hashed email: what the API shows."""
    at = iter(f"2026-11-01T10:00:{n:02d}Z" for n in range(60))
    post(client, {"event_id": "m1", "type": "purchase", "visitor_id": "m1", "customer_id": "cust-1", "item_id": "21232",
                  "price": 1, "timestamp": next(at)},
         {"event_id": "m2", "type": "purchase", "visitor_id": "m2", "customer_id": "ccy", "item_id": "22423",
          "price": 2, "timestamp": next(at)},
         {"event_id": "w2", "type": "add_to_wishlist", "visitor_id": "m2", "item_id": "84029E", "timestamp": next(at)})
    r = client.put("/v1/visitors/m2/preferences", json={"watches": ["85123A"]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    answers = [client.post("/v1/customers/merge", json={"into": "cust-1", "from": ["ccy"]}, headers=ADMIN)
               for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200], answers[0].text
    assert [r.json() for r in answers] == [{"into": "cust-1", "merged": ["ccy"], "already": []},
                                           {"into": "cust-1", "merged": [], "already": ["ccy"]}]
    sha = "ef" * 32
    for visitor, customer, item in (("la", "lg-a", "21232"), ("lb", "lg-b", "22423")):
        post(client, {"event_id": f"l{visitor}", "type": "login", "visitor_id": visitor, "customer_id": customer,
                      "properties": {"email_sha256": sha}, "timestamp": next(at)},
             {"event_id": f"p{visitor}", "type": "purchase", "visitor_id": visitor, "item_id": item, "price": 3,
              "timestamp": next(at)})
    shown: dict[str, object] = {}
    for person in ("ccy", "lg-b"):
        view = client.get(f"/v1/customers/{person}", headers=ADMIN)
        exported = client.get(f"/v1/people/{person}/export", headers=ADMIN)
        assert view.status_code == exported.status_code == 200, (view.text, exported.text)
        shown[person] = without_clock({"view": view.json(), "export": exported.json()})
    return shown


def without_clock(value: object) -> object:
    """``value`` without the fields the server's clock sets (when received, merged, exported, declared)."""
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if k not in ("rt", "at", "exported_at", "updated_at")}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def test_customer_merges_across_slots_show_what_one_redis_shows(client: TestClient, cluster: Cluster,
                                                                redis_url: str, tmp_path: Path, trained_models: Path,
                                                                demo_files: tuple[Path, Path]) -> None:
    """By hand and at login: the merged view and export of each id are those of one Redis."""
    assert cluster.primary_of(keys.customer("cust-1")) != cluster.primary_of(keys.customer("ccy"))
    assert cluster.primary_of(keys.customer("lg-a")) != cluster.primary_of(keys.customer("lg-b"))
    shown = merge_story(client)
    assert shown["ccy"]["view"]["identity"]["merged_ids"] == ["ccy"], shown  # type: ignore[index]
    assert shown["lg-b"]["view"]["customer_id"] == "lg-a", shown  # type: ignore[index]
    assert shown["ccy"]["view"]["rfm"]["frequency"] == 2, shown  # type: ignore[index]
    assert shown["ccy"]["view"]["declared_preferences"]["watches"] == ["85123A"], shown  # type: ignore[index]
    ids = shown["lg-b"]["export"]["ids"]  # type: ignore[index]
    assert ids == {"visitor_ids": ["la", "lb"], "customer_ids": ["lg-a", "lg-b"], "email_sha256": ["ef" * 32]}, ids

    async def watching() -> list[bytes]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        members = await redis.zrange(keys.watchers("84029E"), 0, -1)
        await redis.aclose()
        return members

    assert asyncio.run(watching()) == [b"c:cust-1"]  # the wishlist moved to the survivor's record
    shutil.copytree(trained_models, tmp_path / "one" / "models")

    async def load() -> None:
        redis = Redis.from_url(redis_url)
        await upsert_items(redis, read_items(demo_files[0], ImportReport()))
        await redis.aclose()

    asyncio.run(load())
    with TestClient(create_app(make_settings(tmp_path / "one", redis_url))) as one:
        assert merge_story(one) == shown


def test_a_person_is_exported_and_erased_across_slots(client: TestClient, cluster: Cluster) -> None:
    post(client, {"event_id": "g1", "type": "product_view", "visitor_id": "gone", "item_id": "85123A"})
    assert client.put("/v1/visitors/gone/preferences", json={"watches": ["85123A"]}).status_code == 200
    post(client, {"event_id": "g2", "type": "purchase", "visitor_id": "gone", "customer_id": "cust-1",
                  "item_id": "21232", "price": 1})
    assert cluster.primary_of(keys.visitor("gone")) != cluster.primary_of(keys.customer("cust-1"))
    exported = client.get("/v1/people/cust-1/export", headers=ADMIN)
    assert exported.status_code == 200, exported.text
    assert exported.json()["ids"] == {"visitor_ids": ["gone"], "customer_ids": ["cust-1"], "email_sha256": []}
    assert [e["event_id"] for e in exported.json()["events"]] == ["g1", "g2"]
    r = client.delete("/v1/people/cust-1", headers=ADMIN)
    assert r.status_code == 200, r.text

    async def left() -> list[object]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        values = [await redis.get(keys.visitor("gone")), await redis.get(keys.customer("cust-1")),
                  await redis.get(keys.visitor_preferences("gone")), await redis.zrange(keys.watchers("85123A"), 0, -1)]
        named = [k for tag in ("*{gone}*", "*{cust-1}*") async for k in redis.scan_iter(match=tag)]  # dedup buckets too
        await redis.aclose()
        return [*values, named]

    assert asyncio.run(left()) == [None, None, None, [], []]
    assert (client.app.state.settings.log_dir / erased.FILE).exists()


def test_replay_rebuilds_the_same_profiles(client: TestClient, cluster: Cluster,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``vitrine replay --reset`` on a cluster: the deletes scan every primary, the log is applied
    again through the cluster applier."""
    post(client, *[{"event_id": f"rp{n}", "type": "add_to_cart", "visitor_id": f"rv{n % 4}", "item_id": "85123A"}
                   for n in range(12)],
         {"event_id": "rp-l", "type": "login", "visitor_id": "rv0", "customer_id": "cust-1"},
         {"event_id": "rp-p", "type": "purchase", "visitor_id": "rv0", "customer_id": "cust-1", "item_id": "21232",
          "price": 1})
    wanted = [*(keys.visitor(f"rv{n}") for n in range(4)), keys.customer("cust-1")]

    async def stored() -> dict[str, bytes | None]:
        redis = connect_cluster(cluster.url, timeout_s=5)
        values = {key: await redis.get(key) for key in wanted}
        await redis.aclose()
        return values

    before = asyncio.run(stored())
    assert all(before.values())
    assert asyncio.run(_replay(client.app.state.settings, cluster.url, reset=True)) == 0
    assert "14 applied, 0 duplicates" in capsys.readouterr().out  # all deleted first, all applied again
    assert asyncio.run(stored()) == before


def test_a_primary_killed_mid_stream_loses_and_doubles_nothing(client: TestClient, cluster: Cluster) -> None:
    """Carts are sums: a lost event leaves one short, a doubled one one over. Every batch is also
    sent twice (a client's retry). Requests keep answering 200 while the slot has no primary."""
    visitors = [f"fo{n}" for n in range(8)]
    victim = cluster.primary_of(keys.visitor(visitors[0]))
    assert len({cluster.primary_of(keys.visitor(v)).port for v in visitors}) == 3
    rounds = 24
    waited = 0  # answers whose events waited in the backlog: the outage was hit
    for r in range(rounds):
        if r == 8:
            cluster.kill(victim)
        batch = [{"event_id": f"{v}-{r}", "type": "add_to_cart", "visitor_id": v, "item_id": "85123A"}
                 for v in visitors]
        for _ in range(2):
            answer = client.post("/v1/events", json={"events": batch})
            assert answer.status_code == 200, answer.text
            waited += not answer.json()["profiles_updated"]
        assert client.get("/v1/recommendations", params={"placement": "home", "visitor_id": visitors[0]}
                          ).status_code == 200
    cluster.wait_healthy()
    cluster.restart(victim)
    writer = client.app.state.sink.writer
    give_up = time.monotonic() + 120
    while writer.backlog and time.monotonic() < give_up:
        time.sleep(0.2)
    assert writer.backlog == 0 and waited
    carts = {v: client.get(f"/v1/profiles/{v}", headers=ADMIN).json()["visitor"]["cart"] for v in visitors}
    assert carts == {v: {"85123A": rounds} for v in visitors}
    cluster.wait_healthy()
