"""Abuse limits and strict HTTP: rate limits (429), Content-Type (415), the visitor cookie's flags,
settings refused at start, and `vitrine --version`. The limits on slow and oversized requests,
which need real sockets, are in tests/api/test_server.py."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

import api.ratelimit as ratelimit
from api.ratelimit import Rate, client_address
from engine.settings import Settings
from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[2]
LIMITS_ON = {"rate_limits": True}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "_clock", fake)
    return fake


# ------------------------------------------------------------------------------- the counter


def test_a_rate_needs_room_in_every_window_and_frees_each_when_it_ends(clock: FakeClock) -> None:
    rate = Rate("3/second;5/minute")
    assert rate.text == "3 per second and 5 per minute"
    assert [rate.hit("a") for _ in range(4)] == [True, True, True, False]
    assert rate.hit("b")  # counted per identifier
    assert rate.retry_after("a") == 1
    clock.now += 1
    assert [rate.hit("a") for _ in range(3)] == [True, True, False]  # the minute is full: 5
    assert rate.exhausted("a") and not rate.exhausted("b")
    assert rate.retry_after("a") == 19  # windows are aligned on the clock: this minute ends at 1020
    clock.now = 1020
    assert rate.hit("a")


def test_take_grants_what_fits_and_counts_only_that(clock: FakeClock) -> None:
    rate = Rate("3/minute")
    assert rate.take("v", 5) == 3
    assert rate.take("v", 1) == 0
    assert rate.take("w", 2) == 2 and rate.take("w", 2) == 1


def test_a_full_table_lets_new_identifiers_pass_uncounted(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_TRACKED", 2)
    rate = Rate("1/minute")
    assert rate.hit("a") and rate.hit("b")
    assert all(rate.hit("c") for _ in range(5))  # not tracked: memory stays bounded
    assert not rate.hit("a")


@pytest.mark.parametrize(("client", "expected"), [
    (("203.0.113.7", 5000), "203.0.113.7"),
    (("2001:db8:1:2:aaaa::1", 5000), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:bbbb::9", 5001), "2001:db8:1:2::/64"),
    (("::ffff:203.0.113.7", 5000), "203.0.113.7"),
    (None, "-"),
])
def test_client_address_counts_an_ipv6_client_by_its_64(client: tuple[str, int] | None, expected: str) -> None:
    assert client_address({"client": client}) == expected


# ------------------------------------------------------------------------------- 429s through the API


def assert_limited(response, field: str) -> None:  # noqa: ANN001
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body = response.json()
    assert body["error"].startswith("too many") and body["errors"][0]["field"] == field


def other_address(client: TestClient, address: str) -> TestClient:
    """The same running app, called from another client address."""
    return TestClient(client.app, client=(address, 40000))


@pytest.mark.parametrize("settings_overrides", [{**LIMITS_ON, "rate_limit_address": "3/minute"}])
def test_one_address_gets_429_past_its_limit_and_others_do_not(client: TestClient) -> None:
    for _ in range(2):
        assert client.get("/v1/recommendations?placement=popular").status_code == 200
    assert client.post("/v1/events", json={"event_id": "a1", "type": "page_view", "visitor_id": "v"}).status_code == 200
    assert_limited(client.get("/v1/recommendations?placement=popular"), "client_address")
    assert_limited(client.get("/v1/items/85123A"), "client_address")
    assert_limited(client.get("/v1/admin/models"), "client_address")  # no key: an anonymous caller
    assert client.get("/health").status_code == 200  # ops routes are not limited
    assert other_address(client, "198.51.100.2").get("/v1/recommendations?placement=popular").status_code == 200
    metrics = client.get("/metrics").text
    assert 'vitrine_rate_limited_total{limit="client_address"} 3.0' in metrics


@pytest.mark.parametrize("settings_overrides", [{**LIMITS_ON, "site_keys": ["site-key-1"],
                                                 "rate_limit_site_key": "2/minute"}])
def test_a_site_key_is_limited_over_all_addresses(client: TestClient) -> None:
    key = {"X-API-Key": "site-key-1"}
    assert other_address(client, "198.51.100.1").get("/v1/items/85123A", headers=key).status_code == 200
    assert other_address(client, "198.51.100.2").get("/v1/items/85123A", headers=key).status_code == 200
    assert_limited(other_address(client, "198.51.100.3").get("/v1/items/85123A", headers=key), "x-api-key")


@pytest.mark.parametrize("settings_overrides", [{**LIMITS_ON, "rate_limit_admin_failures": "3/minute"}])
def test_wrong_keys_lock_the_address_out_even_with_the_right_key(client: TestClient) -> None:
    wrong = {"X-API-Key": "guess-0000000000"}
    assert client.get("/v1/admin/models", headers=wrong).status_code == 403
    assert client.get("/v1/profiles/v", headers=wrong).status_code == 403
    # No site keys are set, so the route is open, but a key that matches nothing is a guess too.
    assert client.get("/v1/recommendations?placement=popular", headers=wrong).status_code == 200
    assert_limited(client.get("/v1/admin/models", headers=wrong), "x-api-key")
    assert_limited(client.get("/v1/admin/models", headers=ADMIN), "x-api-key")
    assert_limited(client.get("/v1/recommendations?placement=popular", headers=ADMIN), "x-api-key")
    assert client.get("/v1/recommendations?placement=popular").status_code == 200  # no key: anonymous
    assert other_address(client, "198.51.100.9").get("/v1/admin/models", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{**LIMITS_ON, "rate_limit_address": "1/minute",
                                                 "rate_limit_trusted": "3/minute"}])
def test_admin_key_callers_have_their_own_limit(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/v1/recommendations?placement=popular", headers=ADMIN).status_code == 200
    assert_limited(client.get("/v1/admin/models", headers=ADMIN), "client_address")


@pytest.mark.parametrize("settings_overrides", [{**LIMITS_ON, "rate_limit_visitor_events": "3/minute"}])
def test_events_past_a_visitors_limit_are_rejected_one_by_one_and_the_rest_kept(client: TestClient) -> None:
    items = list(client.app.state.engine.catalogue.current.items)[:5]
    batch = [{"event_id": f"a{n}", "type": "product_view", "visitor_id": "busy", "item_id": item}
             for n, item in enumerate(items)]
    batch.insert(2, {"event_id": "b0", "type": "product_view", "visitor_id": "calm", "item_id": items[0]})
    r = client.post("/v1/events", json={"events": batch})
    assert r.status_code == 207, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    body = r.json()
    assert [a["event_id"] for a in body["accepted"]] == ["a0", "a1", "b0", "a2"]
    assert [(x["index"], x["errors"][0]["field"]) for x in body["rejected"]] == [
        (4, "events[4].visitor_id"), (5, "events[5].visitor_id")]
    assert body["rejected"][0]["errors"][0]["message"].startswith("rate limited: at most 3 per minute")
    busy = client.get("/v1/profiles/busy", headers=ADMIN).json()
    assert sorted(busy["visitor"]["session"]["items"]) == sorted(items[:3])  # the good events were kept

    one = client.post("/v1/events", json={"event_id": "a9", "type": "page_view", "visitor_id": "busy"})
    assert one.status_code == 429 and int(one.headers["retry-after"]) >= 1
    assert one.json()["errors"][0]["field"] == "visitor_id" and one.json()["accepted"] == []
    # A request whose events are all refused, some for being invalid: the invalid ones are to fix.
    mixed = client.post("/v1/events", json={"events": [{"event_id": "a10", "type": "page_view", "visitor_id": "busy"},
                                                       {"event_id": "x", "type": "warp", "visitor_id": "calm"}]})
    assert mixed.status_code == 422 and "retry-after" in mixed.headers
    # The site's backend (admin key) is not limited per visitor: it may send a day's history at once.
    assert client.post("/v1/events", headers=ADMIN,
                       json={"event_id": "a11", "type": "page_view", "visitor_id": "busy"}).status_code == 200
    assert 'vitrine_rate_limited_total{limit="visitor_events"} 4.0' in client.get("/metrics").text


# ------------------------------------------------------------------------------- 415


def test_a_body_not_sent_as_json_is_a_415_naming_content_type(client: TestClient) -> None:
    event = b'{"event_id": "t1", "type": "page_view", "visitor_id": "v"}'
    for headers in ({"content-type": "text/html"}, {"content-type": "application/x-www-form-urlencoded"}, {}):
        r = client.post("/v1/events", content=event, headers=headers)
        assert r.status_code == 415, (headers, r.text)
        assert r.json()["errors"] == [{"field": "content-type", "message": "must be application/json or text/plain"}]
    for path in ("/v1/items",):
        for method in ("PUT", "DELETE"):
            r = client.request(method, path, content=b'{"items": []}', headers={**ADMIN, "content-type": "text/plain"})
            assert r.status_code == 415 and r.json()["errors"][0]["field"] == "content-type"
    r = client.post("/v1/admin/preview", content=b"rules=x", headers={**ADMIN, "content-type": "multipart/form-data"})
    assert r.status_code == 415 and r.json()["errors"][0]["message"] == "must be application/json"
    assert client.post("/v1/events", content=event,
                       headers={"content-type": "application/json; charset=utf-8"}).status_code == 200


def test_a_beacon_posts_events_as_text_plain(client: TestClient) -> None:
    """navigator.sendBeacon(url, JSON.stringify(event)) sends text/plain;charset=UTF-8."""
    r = client.post("/v1/events", content=b'{"event_id": "bc1", "type": "page_view", "visitor_id": "beacon"}',
                    headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200 and r.json()["accepted"] == [{"index": 0, "event_id": "bc1"}]
    bad = client.post("/v1/events", content=b"hello", headers={"content-type": "text/plain"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "body"


# ------------------------------------------------------------------------------- the visitor cookie


def test_the_visitor_cookie_is_httponly_lax_and_secure_over_https(client: TestClient) -> None:
    plain = client.get("/v1/recommendations?placement=popular").headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=lax" in plain and "Secure" not in plain
    https = TestClient(client.app, base_url="https://testserver")
    assert "Secure" in https.get("/v1/recommendations?placement=popular").headers["set-cookie"]


@pytest.mark.parametrize("settings_overrides", [{"cookie_secure": True}])
def test_cookie_secure_marks_it_secure_whatever_the_scheme(client: TestClient) -> None:
    assert "Secure" in client.get("/v1/recommendations?placement=popular").headers["set-cookie"]


# ------------------------------------------------------------------------------- settings, version


def test_unsafe_settings_are_refused_without_echoing_secrets() -> None:
    with pytest.raises(ValidationError) as short:
        Settings(admin_key="fifteen-chars!!")
    assert "admin_key" in str(short.value) and "fifteen-chars" not in str(short.value)
    assert Settings(admin_key="sixteen-chars!!!").admin_key == "sixteen-chars!!!"
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=["https://shop.example", "*"])
    with pytest.raises(ValidationError, match="rate_limit_address"):
        Settings(rate_limit_address="lots")
    assert Settings(rate_limit_visitor_events="off").rate_limit_visitor_events is None
    assert Settings(rate_limit_visitor_events="").rate_limit_visitor_events is None


def test_serve_refuses_a_short_admin_key_at_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "VITRINE_DATA_DIR": str(tmp_path), "VITRINE_ADMIN_KEY": "short-key"}
    result = subprocess.run([sys.executable, "-m", "api.cli", "serve"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "admin_key" in result.stderr and "at least 16 characters" in result.stderr
    assert "short-key" not in result.stderr


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "api.cli", "--version"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"vitrine {version('vitrine')}"
