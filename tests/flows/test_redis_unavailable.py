"""A hung or stopped Redis: admin routes answer 503 with a clear message (never hang, never 500);
site routes keep answering from the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store.server import start_redis
from models import artifacts
from tests.conftest import ADMIN, make_settings


def test_a_hung_redis_is_a_503_on_admin_routes(redis_url: str, data_dir: Path) -> None:
    """CLIENT PAUSE holds every command for 5 s; the client's socket timeout (0.3 s here) cuts
    the admin read short: a 503, where without a timeout the request would wait out the pause."""
    settings = make_settings(data_dir, redis_url, redis_socket_timeout_s=0.3)
    with TestClient(create_app(settings)) as app, redis.Redis.from_url(redis_url) as admin:
        assert app.get("/v1/profiles/nobody", headers=ADMIN).status_code == 404
        admin.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        try:
            r = app.get("/v1/profiles/nobody", headers=ADMIN)
            assert r.status_code == 503, r.text
            assert r.json()["error"].startswith("Redis is unavailable") and r.headers["retry-after"] == "1"
            assert r.json()["errors"] == [{"field": "redis", "message": "unavailable"}]
            r = app.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v"})
            assert r.status_code == 200 and r.json()["degraded"] is True
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        assert app.get("/v1/profiles/nobody", headers=ADMIN).status_code == 404


def test_a_stopped_redis_is_a_503_on_admin_routes(tmp_path: Path, trained_models: Path) -> None:
    shutil.copytree(trained_models, tmp_path / "models")
    server = start_redis(tmp_path / "redis", persist=False)
    try:
        with TestClient(create_app(make_settings(tmp_path, server.url))) as app:
            server.stop()
            r = app.get("/v1/profiles/v", headers=ADMIN)
            assert r.status_code == 503 and "Redis is unavailable" in r.json()["error"]
            r = app.put("/v1/items", headers=ADMIN, json={"items": [{"item_id": "A", "title": "Mug"}]})
            assert r.status_code == 503 and "Redis is unavailable" in r.json()["error"]
            r = app.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v"})
            assert r.status_code == 200 and r.json()["degraded"] is True
            # A customer the model was trained on: without the profile nobody can tell whether
            # they withdrew consent since, so their model row is not used either.
            customer = next(u[2:] for u in artifacts.load(tmp_path / "models" / artifacts.current_version(
                tmp_path / "models")).user_ids if u.startswith("c:"))
            r = app.get("/v1/recommendations", headers=ADMIN,
                        params={"placement": "home", "visitor_id": "v", "customer_id": customer})
            assert r.status_code == 200 and r.json()["degraded"] is True
            assert {i["reason"] for i in r.json()["items"]} <= {"trending", "popular"}, r.json()
    finally:
        server.stop()
