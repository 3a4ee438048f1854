"""Events naming items the catalogue does not have: logged and kept in the visitor's history, but
counted neither in trending nor in what training learns from (neighbours, bought-together)."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli.quality import train
from engine.events.history import interactions
from models import artifacts
from tests.conftest import ADMIN, make_settings

REAL = "85123A"  # in the demo catalogue
FAKE = [f"NOPE{n:03d}" for n in range(250)]  # more than the trending read keeps (engine.ranking.trending.TOP)


def post(client: TestClient, events: list[dict]) -> None:
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and len(r.json()["accepted"]) == len(events), r.text


def trending(client: TestClient) -> list[tuple[str, str]]:
    r = client.get("/v1/recommendations", params={"placement": "trending", "n": 20})
    assert r.status_code == 200, r.text
    return [(i["item_id"], i["reason"]) for i in r.json()["items"]]


def counted(client: TestClient) -> set[str]:
    """Every item in the trending counters."""
    with redis.Redis.from_url(client.app.state.settings.redis_url) as r:  # type: ignore[attr-defined]
        return {m.decode() for key in r.scan_iter("tr:*") for m in r.zrange(key, 0, -1)}


def test_unknown_items_reach_the_history_and_the_log_but_not_trending(client: TestClient) -> None:
    # Each made-up id weighs more than the real item's one view (two cart adds each).
    post(client, [{"event_id": f"f{n}-{k}", "type": "add_to_cart", "visitor_id": f"bot{n % 5}", "item_id": item}
                  for n, item in enumerate(FAKE) for k in range(2)])
    post(client, [{"event_id": "real", "type": "product_view", "visitor_id": "shopper", "item_id": REAL}])
    assert (REAL, "trending") in trending(client)
    assert counted(client) == {REAL}
    history = client.get("/v1/profiles/bot4", headers=ADMIN).json()["visitor"]["session"]["items"]
    assert history[0] == FAKE[-1]
    logged = {orjson.loads(line)["item_id"] for path in client.app.state.settings.log_dir.glob("*.jsonl")
              for line in path.read_bytes().splitlines()}
    assert logged == {*FAKE, REAL}


def test_without_a_catalogue_every_item_is_counted(data_dir: Path, redis_url: str) -> None:
    with TestClient(create_app(make_settings(data_dir, redis_url))) as client:
        assert not client.app.state.engine.catalogue.current.items  # type: ignore[attr-defined]
        post(client, [{"event_id": "a", "type": "product_view", "visitor_id": "v", "item_id": "ANY1"}])
        assert ("ANY1", "trending") in trending(client)


def test_training_leaves_out_items_not_in_the_catalogue(client: TestClient) -> None:
    """`vitrine train` reads the catalogue: the made-up items co-viewed and bought with real ones
    are neither items of the model nor anyone's neighbours."""
    real = ["85123A", "22423", "21232", "84879", "47566"]
    events = []
    for n in range(30):
        visitor, fake = f"p{n}", FAKE[n % 3]
        events += [{"event_id": f"v{n}-{k}", "type": "product_view", "visitor_id": visitor, "item_id": item}
                   for k, item in enumerate([real[n % 5], fake, real[(n + 1) % 5]])]
        events.append({"event_id": f"o{n}", "type": "purchase", "visitor_id": visitor,
                       "items": [{"item_id": real[n % 5]}, {"item_id": fake}, {"item_id": real[(n + 2) % 5]}]})
    post(client, events)
    version = train(client.app.state.settings)  # type: ignore[attr-defined]
    artifact = artifacts.load(client.app.state.settings.models_dir / version)  # type: ignore[attr-defined]
    assert sorted(artifact.item_ids) == sorted(real)
    assert artifact.complement_index.shape[0] == len(real) and (artifact.complement_index < len(real)).all()


def test_the_history_rows_keep_to_the_catalogue_when_there_is_one() -> None:
    events = [{"event_id": "e1", "type": "product_view", "visitor_id": "v", "item_id": "A", "ts": 1.0},
              {"event_id": "e2", "type": "purchase", "visitor_id": "v", "ts": 2.0,
               "items": [{"item_id": "A"}, {"item_id": "Z"}]},
              {"event_id": "e3", "type": "add_to_cart", "visitor_id": "v", "item_id": "Z", "ts": 3.0}]
    assert [r.item_id for r in interactions(events)] == ["A", "A", "Z", "Z"]
    assert [r.item_id for r in interactions(events, catalogue={"A"})] == ["A", "A"]
