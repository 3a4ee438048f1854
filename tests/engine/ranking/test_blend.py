"""The blend as the API serves it (real Redis, real model) and as `vitrine evaluate` scores it:
the same list for the same history, and the exclusion settings doing what they say."""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from engine.events.history import interactions
from engine.training.offline import OfflineRanker
from engine.runtime import profile_config
from engine.settings import DEFAULT_BLEND
from models import artifacts
from models.evaluate import Query
from tests.conftest import make_settings


@pytest.fixture
def blend_app(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]) -> Iterator[object]:
    """A factory of apps serving the demo model with the default blend, settings overridden; no
    exploration unless asked (new items are not what the offline ranker scores, and the demo
    catalogue, loaded after training, makes its unsold items new)."""
    from engine.catalog import upsert_items
    from engine.ingest.importer import ImportReport, read_items

    models_dir = data_dir / "models"
    meta_path = models_dir / artifacts.current_version(models_dir) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["blend"] = dict(DEFAULT_BLEND)
    meta_path.write_text(json.dumps(meta))

    async def load() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await upsert_items(client, read_items(demo_files[0], ImportReport()))
        await client.aclose()

    asyncio.run(load())
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(data_dir, redis_url, **{"new_item_share": 0.0, **overrides})))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _events(visitor: str, model_items: list[str]) -> list[dict]:
    now = time.time()
    a, b, c, d = model_items[:4]
    stamp = lambda minutes: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - minutes * 60))  # noqa: E731
    return [
        {"event_id": f"{visitor}-1", "type": "product_view", "visitor_id": visitor, "item_id": a, "timestamp": stamp(9)},
        {"event_id": f"{visitor}-2", "type": "add_to_wishlist", "visitor_id": visitor, "item_id": b, "timestamp": stamp(8)},
        {"event_id": f"{visitor}-3", "type": "purchase", "visitor_id": visitor, "timestamp": stamp(7),
         "items": [{"item_id": c, "quantity": 2, "price": 1.5}]},
        {"event_id": f"{visitor}-4", "type": "add_to_cart", "visitor_id": visitor, "item_id": d, "timestamp": stamp(6)},
        {"event_id": f"{visitor}-5", "type": "product_view", "visitor_id": visitor, "item_id": a, "timestamp": stamp(5)},
    ]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_evaluation_scores_exactly_the_list_the_api_serves(blend_app, exclude_seen: bool) -> None:  # noqa: ANN001
    client = blend_app(exclude_seen=exclude_seen, exclude_purchased=False)
    engine = client.app.state.engine
    model = engine.models.current
    popular = [model.item_ids[i] for i in model.view(engine.catalogue.current).popular_order[:40:10]]
    events = _events("eval-v", popular)
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    served = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "eval-v", "n": 20}).json()

    # The evaluation path: the same events as training rows, folded without Redis.
    settings = client.app.state.settings
    stored = [dict(e, ts=calendar.timegm(time.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))) for e in events]
    history = tuple(interactions(stored))
    ranker = OfflineRanker(engine.catalogue.current, profile_config(settings), exclude_seen=exclude_seen,
                           exclude_purchased=False)(model.artifact)
    offline = ranker(Query("v:eval-v", "eval-v", None, history, time.time(), 20, frozenset()))

    assert offline == [i["item_id"] for i in served["items"]]
    reasons = {i["item_id"]: i["reason"] for i in served["items"]}
    viewed, wished, bought, carted = popular[:4]
    assert carted not in reasons  # the cart is never shown
    if exclude_seen:
        assert not {viewed, wished, bought} & set(reasons)
        # each names the signal that ranked it (engine.ranking.reasons): ALS (nearest item of theirs),
        # co-visitation (the item of theirs that voted for it) or popularity
        anchors = {viewed, wished, bought, carted}
        for reason in reasons.values():
            kind, _, anchor = reason.partition(":")
            assert kind in ("because_you_viewed", "because_you_carted", "because_you_bought", "similar_to",
                            "popular"), reason
            assert (anchor in anchors) == (kind != "popular"), reason
    else:  # what the visitor keeps coming back to leads the list
        assert reasons[viewed] == "viewed_before" and reasons[bought] == "buy_again"
        assert offline.index(viewed) < 5


def test_purchased_items_stay_out_when_so_configured(blend_app) -> None:  # noqa: ANN001
    client = blend_app(exclude_seen=False, exclude_purchased=True)
    model = client.app.state.engine.models.current
    popular = [model.item_ids[i] for i in model.view(client.app.state.engine.catalogue.current).popular_order[:4]]
    assert client.post("/v1/events", json={"events": _events("keep-out", popular)}).status_code == 200
    got = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "keep-out", "n": 30}).json()
    ids = [i["item_id"] for i in got["items"]]
    assert popular[2] not in ids and popular[3] not in ids and popular[0] in ids


def test_session_signals_and_the_models_own_exclusions_are_served_as_evaluated(blend_app, data_dir: Path) -> None:  # noqa: ANN001
    models_dir = data_dir / "models"
    meta_path = models_dir / artifacts.current_version(models_dir) / "meta.json"
    meta = json.loads(meta_path.read_text())
    # What `vitrine train` may choose: the session signals in the blend, seen items allowed back.
    meta["params"].update(blend={**DEFAULT_BLEND, "session_neighbours": 1.0, "sequence": 1.0}, exclude_seen=False,
                          exclude_purchased=False)
    meta_path.write_text(json.dumps(meta))
    client = blend_app()  # nothing set explicitly: the model's choice is served
    engine = client.app.state.engine
    model = engine.models.current
    assert model.artifact.session_index is not None and model.blend["sequence"] == 1.0
    popular = [model.item_ids[i] for i in model.view(engine.catalogue.current).popular_order[:40:10]]
    events = _events("session-v", popular)
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    served = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "session-v", "n": 20}).json()
    stored = [dict(e, ts=calendar.timegm(time.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))) for e in events]
    # The ranker's own flags say "leave seen items out": the model's recorded choice wins, as in the API.
    ranker = OfflineRanker(engine.catalogue.current, profile_config(client.app.state.settings), exclude_seen=True,
                           exclude_purchased=True)(model.artifact)
    offline = ranker(Query("v:session-v", "session-v", None, tuple(interactions(stored)), time.time(), 20, frozenset()))
    assert offline == [i["item_id"] for i in served["items"]]
    reasons = {i["item_id"]: i["reason"] for i in served["items"]}
    assert reasons.get(popular[0]) == "viewed_before"

    pinned = blend_app(exclude_seen=True)  # set explicitly: the setting wins over the model's choice
    assert pinned.post("/v1/events", json={"events": _events("pinned-v", popular)}).status_code == 200
    got = pinned.get("/v1/recommendations", params={"placement": "home", "visitor_id": "pinned-v", "n": 20}).json()
    assert popular[0] not in {i["item_id"] for i in got["items"]}
