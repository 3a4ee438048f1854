"""End to end over real sockets: a uvicorn server on 127.0.0.1, real Redis, the trained model."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.app import create_app
from engine.catalog import upsert_items
from engine.ingest.importer import ImportReport, read_items
from models import artifacts
from models.als import ALSParams
from models.train import TrainConfig, fit
from tests.conftest import ADMIN, LiveServer, make_settings
from tests.redis_clients import async_client


@pytest.fixture
def live(data_dir: Path, redis_url: str, demo_files: tuple[Path, Path]):  # noqa: ANN201
    async def load() -> None:
        client = async_client(redis_url)
        await upsert_items(client, read_items(demo_files[0], ImportReport()))
        await client.aclose()

    asyncio.run(load())
    app = create_app(make_settings(data_dir, redis_url))
    with LiveServer(app) as server:
        yield server, app


def _for_you(http: httpx.Client, visitor: str, n: int = 20) -> list[str]:
    r = http.get("/v1/recommendations", params={"placement": "home", "visitor_id": visitor, "n": n})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def test_a_few_views_move_the_next_for_you_list_toward_what_was_viewed(live) -> None:  # noqa: ANN001
    server, app = live
    model = app.state.engine.models.current
    catalogue = app.state.engine.catalogue.current
    # Pick, from the data, the category with the most items among the 300 most popular, and
    # three of its popular items: no hard-coded ids.
    popular = [model.item_ids[i] for i in np.argsort(-model.artifact.popularity)[:300]]
    categories = Counter(catalogue.items[i].category for i in popular if i in catalogue.items)
    category = next(c for c, _ in categories.most_common() if not c.startswith("gifts."))
    viewed = [i for i in popular if catalogue.items.get(i) and catalogue.items[i].category == category][5:8]

    def share(items: list[str]) -> float:
        return sum(catalogue.items[i].category == category for i in items if i in catalogue.items) / len(items)

    def closeness(items: list[str]) -> float:
        rec = model.unit_factors[[model.item_index[i] for i in items if i in model.item_index]]
        seen = model.unit_factors[[model.item_index[i] for i in viewed]]
        return float((rec @ seen.T).mean())

    with httpx.Client(base_url=server.url, timeout=5) as http:
        before = _for_you(http, "newcomer")
        for n, item in enumerate(viewed[:2]):
            r = http.post("/v1/events", json={"event_id": f"nv{n}", "type": "product_view",
                                              "visitor_id": "newcomer", "item_id": item})
            assert r.status_code == 200
        after_two = _for_you(http, "newcomer")
        assert after_two != before  # two clicks change the next page
        http.post("/v1/events", json={"event_id": "nv2", "type": "product_view", "visitor_id": "newcomer",
                                      "item_id": viewed[2]})
        after = _for_you(http, "newcomer")
    assert not set(viewed) & set(after)
    assert share(after) > share(before)
    assert closeness(after) > closeness(before) + 0.05
    reasons = [i["reason"] for i in httpx.get(f"{server.url}/v1/recommendations",
                                              params={"placement": "home", "visitor_id": "newcomer"}).json()["items"]]
    assert all(r.startswith("because_you_viewed:") for r in reasons[:-1])
    # the last slot may explore a new item alike a viewed one (the demo's unsold items are new to the model)
    assert reasons[-1].partition(":")[0] in ("because_you_viewed", "similar_content")


def test_model_hot_swap_under_concurrent_requests_drops_nothing(live, trained_models: Path) -> None:  # noqa: ANN001
    server, app = live
    settings = app.state.settings
    old = app.state.engine.models.current.version
    # A genuinely different model: retrain on the same matrix with other parameters.
    current = artifacts.load(settings.models_dir / old)
    from models.interactions import InteractionMatrix

    matrix = InteractionMatrix(user_ids=current.user_ids, item_ids=current.item_ids, user_items=current.user_items,
                               basket_items=current.user_items, item_weight=current.popularity, first_ts=0.0,
                               last_ts=0.0, n_events=int(current.user_items.nnz))
    new = fit(matrix, TrainConfig(weights=settings.event_weights, als=ALSParams(factors=16, iterations=3)))
    path = artifacts.save(new, settings.models_dir)

    statuses: Counter[int] = Counter()
    versions: list[str] = []

    async def hammer(stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            n = 0
            while not stop.is_set():
                n += 1
                r = await http.get("/v1/recommendations", params={"placement": "home", "visitor_id": f"h{n % 7}"})
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])

    async def scenario() -> None:
        stop = asyncio.Event()
        workers = [asyncio.create_task(hammer(stop)) for _ in range(8)]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            r = await http.post("/v1/admin/models/reload", params={"version": path.name}, headers=ADMIN)
            assert r.status_code == 200 and r.json() == {"serving": path.name, "changed": True}
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)

    asyncio.run(scenario())
    assert set(statuses) == {200}, statuses
    assert versions[0] == old and versions[-1] == path.name
    assert set(versions) == {old, path.name}
    # The swap is one reference: once the new version shows up, the old one never comes back.
    first_new = versions.index(path.name)
    assert old not in versions[first_new + 8:]
    # Rolling back works the same way, and unknown versions are a clear 404.
    with httpx.Client(base_url=server.url, headers=ADMIN) as http:
        assert http.post("/v1/admin/models/reload", params={"version": old}).json()["serving"] == old
        r = http.post("/v1/admin/models/reload", params={"version": "nope"})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "version"
        listing = http.get("/v1/admin/models").json()
        assert listing["serving"] == old and listing["promoted"] == old
        assert set(listing["versions"]) == {old, path.name}


def test_other_processes_follow_a_promotion_by_polling(live) -> None:  # noqa: ANN001
    """A second app (another replica) sees a version promoted elsewhere within the poll interval."""
    server, app = live
    settings = app.state.settings
    old = app.state.engine.models.current.version
    copy = settings.models_dir / "20991231T000000Z-abcdef"
    shutil.copytree(settings.models_dir / old, copy)
    meta = copy / "meta.json"
    meta.write_text(meta.read_text().replace(old, copy.name))
    artifacts.promote(settings.models_dir, copy.name)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/v1/recommendations", params={"placement": "popular"}).json()
        if body["model_version"] == copy.name:
            break
        time.sleep(0.1)
    assert body["model_version"] == copy.name
