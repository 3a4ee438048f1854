"""What an admin or catalogue route answers when Redis fails under it: 503 to retry when Redis (or
a cluster with no node answering) is unavailable; 500, logged, for a command that spanned hash
slots, which engine.store.cluster rules out (a bug, not the request's fault)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ClusterCrossSlotError, ConnectionError, RedisClusterException

from api.app import create_app
from tests.conftest import make_settings

RAISED = {
    "down": ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
    "cluster-down": RedisClusterException("All nodes failed"),
    "cross-slot": ClusterCrossSlotError("Keys in request don't hash to the same slot"),
}


@pytest.fixture
def client(tmp_path: Path, redis_url: str) -> TestClient:
    app = create_app(make_settings(tmp_path, redis_url))

    @app.get("/v1/testing/redis-fails/{how}")
    async def fails(how: str) -> None:
        raise RAISED[how]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("how", ["down", "cluster-down"])
def test_redis_unavailable_is_a_503_to_retry(client: TestClient, how: str) -> None:
    answer = client.get(f"/v1/testing/redis-fails/{how}")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["errors"] == [{"field": "redis", "message": "unavailable"}]


def test_a_cross_slot_command_is_a_logged_500(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="api.app"):
        answer = client.get("/v1/testing/redis-fails/cross-slot")
    assert answer.status_code == 500
    assert answer.json()["errors"] == [{"field": "redis", "message": "cross-slot command"}]
    assert "spanned hash slots" in caplog.text
