"""Publishing the rules file through the admin API: check, publish (atomic, with history), conflicts
and roll back; the served rules change at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.merch import publish
from engine.merch.live import version_of
from tests.conftest import ADMIN

GOOD = "placements:\n  home:\n    pins:\n      - {item: \"85123A\", slot: 1}\n"
OTHER = "placements:\n  home:\n    pins:\n      - {item: \"22423\", slot: 1}\n"
BAD = "placements:\n  home:\n    boosts:\n      - affinity: category\n        factor: lots\n"


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules" / "rules.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    return path


@pytest.fixture
def settings_overrides(rules_path: Path) -> dict[str, object]:
    return {"rules_file": rules_path, "rules_history": 3}


def test_check_names_the_line_and_writes_nothing(client: TestClient, rules_path: Path) -> None:
    answer = client.post("/v1/admin/rules/check", json={"rules": BAD}, headers=ADMIN)
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert errors[0]["line"] == 5 and "factor" in errors[0]["field"], errors
    assert client.post("/v1/admin/rules/check", json={"rules": OTHER}, headers=ADMIN).json() == {
        "valid": True, "version": version_of(OTHER.encode())}
    assert rules_path.read_text() == GOOD


def test_publish_serves_at_once_keeps_history_and_rolls_back(client: TestClient, rules_path: Path) -> None:
    text = client.get("/v1/admin/rules/file", headers=ADMIN).json()
    assert text["text"] == GOOD and text["version"] == text["live_version"] == version_of(GOOD.encode())

    refused = client.put("/v1/admin/rules", json={"rules": BAD}, headers=ADMIN)
    assert refused.status_code == 422 and rules_path.read_text() == GOOD

    answer = client.put("/v1/admin/rules", json={"rules": OTHER, "base_version": text["version"]}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["published"] == answer.json()["version"] == version_of(OTHER.encode())
    assert rules_path.read_text() == OTHER
    home = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v-pub"}).json()
    assert home["items"][0] == {"item_id": "22423", "score": home["items"][0]["score"], "reason": "pinned"}

    stale = client.put("/v1/admin/rules", json={"rules": GOOD, "base_version": text["version"]}, headers=ADMIN)
    assert stale.status_code == 409 and stale.json()["errors"][0]["field"] == "base_version"

    history = client.get("/v1/admin/rules/history", headers=ADMIN).json()
    assert [v["version"] for v in history["versions"]] == [version_of(OTHER.encode()), version_of(GOOD.encode())]

    back = client.post("/v1/admin/rules/rollback", json={"version": version_of(GOOD.encode())}, headers=ADMIN)
    assert back.status_code == 200 and back.json()["version"] == version_of(GOOD.encode())
    assert rules_path.read_text() == GOOD
    home = client.get("/v1/recommendations", params={"placement": "home", "visitor_id": "v-pub"}).json()
    assert home["items"][0]["item_id"] == "85123A"

    unknown = client.post("/v1/admin/rules/rollback", json={"version": "0" * 12}, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "version"
    assert client.post("/v1/admin/rules/rollback", json={"version": "nope"}, headers=ADMIN).status_code == 422


def test_history_keeps_the_newest_versions(rules_path: Path) -> None:
    for n in range(5):
        publish.publish(rules_path, f"# {n}\n{GOOD}".encode(), keep=3, now=1_800_000_000 + n)
    kept = publish.history(rules_path)
    assert [e.version for e in kept] == [version_of(f"# {n}\n{GOOD}".encode()) for n in (4, 3, 2)]
    assert kept[0].published_at == pytest.approx(1_800_000_004)
    assert publish.published_text(rules_path, kept[-1].version) == f"# 2\n{GOOD}".encode()
    assert not list(rules_path.parent.glob(".rules.yaml.*.tmp"))
    assert rules_path.stat().st_mode & 0o777 == 0o644  # readable as before, not mkstemp's 0600


@pytest.mark.parametrize("settings_overrides", [{}])
def test_publish_needs_a_rules_file(client: TestClient) -> None:
    for method, path, body in (("PUT", "/v1/admin/rules", {"rules": GOOD}), ("GET", "/v1/admin/rules/file", None),
                               ("GET", "/v1/admin/rules/history", None),
                               ("POST", "/v1/admin/rules/rollback", {"version": "0" * 12})):
        answer = client.request(method, path, json=body, headers=ADMIN)
        assert answer.status_code == 409, (path, answer.text)
        assert answer.json()["errors"][0]["field"] == "rules_file"
    assert client.put("/v1/admin/rules", json={"rules": GOOD}).status_code == 401
