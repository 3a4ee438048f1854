"""The web face over HTTP, without a browser: what is served where, the headers pages carry, the
console's sign-in, session cookie and CSRF checks."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.triggers import keys as trigger_keys
from tests.conftest import ADMIN, ADMIN_KEY
from tests.api.web.webshop import DEMO_RULES, IDENTITY_SECRET
from tests.redis_clients import is_cluster_url, sync_client


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEMO_RULES)
    return {"demo_storefront": True, "identity_secret": IDENTITY_SECRET, "rules_file": rules}


def _signed_in(client: TestClient) -> str:
    """Sign in; the session's CSRF token."""
    form = client.get("/console/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/console/signin", data={"csrf": token, "admin_key": ADMIN_KEY}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/rules"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    page = client.get("/console/rules")
    assert page.status_code == 200
    return re.search(r'data-csrf="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_snippet_is_served_versioned_and_cacheable(client: TestClient) -> None:
    answer = client.get("/sdk/vitrine.js")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
    assert "max-age=300" in answer.headers["cache-control"]
    version = re.search(r'var VERSION = "([0-9.]+)"', answer.text).group(1)  # type: ignore[union-attr]
    assert client.get("/sdk/vitrine.js", headers={"if-none-match": answer.headers["etag"]}).status_code == 304
    pinned = client.get(f"/sdk/{version}/vitrine.js")
    assert pinned.status_code == 200 and "immutable" in pinned.headers["cache-control"]
    assert client.get("/sdk/0.0.1/vitrine.js").status_code == 404
    assert len(answer.content) < 20_000


def test_storefront_pages_carry_a_strict_csp_and_the_snippet(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200
    csp = home.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    snippet = re.search(r'<script src="(/sdk/[0-9.]+/vitrine\.js)" defer', home.text).group(1)  # type: ignore[union-attr]
    assert "<script>" not in home.text
    assert client.get(snippet).headers["cache-control"].endswith("immutable")  # the pinned version, for good
    assert 'data-vitrine-placement="home"' in home.text and 'data-vitrine-block="home_top"' in home.text
    css = re.search(r'href="(/assets/[0-9a-f]{12}/shop\.css)"', home.text).group(1)  # type: ignore[union-attr]
    assert client.get(css).headers["cache-control"].endswith("immutable")
    product = client.get("/product/85123A")
    assert product.status_code == 200 and 'data-vitrine-item="85123A"' in product.text
    assert client.get("/product/NOPE").status_code == 404


def test_demo_login_signs_the_customer_token(client: TestClient) -> None:
    from engine.profiles.tokens import customer_token

    answer = client.post("/login", data={"customer_id": "13085"}, follow_redirects=False)
    assert answer.status_code == 303
    home = client.get("/")
    assert f'data-customer-token="{customer_token(IDENTITY_SECRET, "13085")}"' in home.text
    assert client.post("/login", data={"customer_id": "bad id!"}).status_code == 422


@pytest.mark.parametrize("settings_overrides", [{}])
def test_production_serves_no_shop(client: TestClient) -> None:
    assert client.get("/").status_code == 404
    assert client.get("/product/85123A").status_code == 404
    assert client.get("/sdk/vitrine.js").status_code == 200
    assert client.get("/console/signin").status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"console": False}])
def test_the_console_can_be_turned_off(client: TestClient) -> None:
    assert client.get("/console/signin").status_code == 404


def test_console_needs_a_session(client: TestClient) -> None:
    for path in ("/console/rules", "/console/models", "/console/ops", "/console/experiments", "/console/customers",
                 "/console/segments", "/console/triggers", "/console/customers/13085/export",
                 "/console/customers/13085/erase"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/signin", path
    assert client.post("/console/rules/check", json={"rules": "x"}, follow_redirects=False).status_code == 303


def test_signin_refuses_a_wrong_key_and_a_forged_form(client: TestClient) -> None:
    form = client.get("/console/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/console/signin", data={"csrf": token, "admin_key": "x" * 20})
    assert wrong.status_code == 403 and "not the admin key" in wrong.text
    client.cookies.clear()
    forged = client.post("/console/signin", data={"csrf": token, "admin_key": ADMIN_KEY}, follow_redirects=False)
    assert forged.status_code == 403 and "vt_console=" not in forged.headers.get("set-cookie", "")


def test_console_forms_need_the_csrf_token(client: TestClient, settings_overrides: dict[str, object]) -> None:
    csrf = _signed_in(client)
    rules = Path(str(settings_overrides["rules_file"]))
    draft = DEMO_RULES + "\n# edited\n"
    forged = client.post("/console/rules/publish", data={"rules": draft, "csrf": "forged"})
    assert forged.status_code == 403 and rules.read_text() == DEMO_RULES
    assert client.post("/console/rules/check", json={"rules": draft}).status_code == 403
    checked = client.post("/console/rules/check", json={"rules": "placements: [1"}, headers={"x-csrf-token": csrf})
    assert checked.json()["valid"] is False and checked.json()["errors"][0]["line"]

    broken = client.post("/console/rules/publish", data={"rules": "placements: [1", "csrf": csrf})
    assert broken.status_code == 422 and rules.read_text() == DEMO_RULES and "line 1" in broken.text
    published = client.post("/console/rules/publish", data={"rules": draft, "csrf": csrf}, follow_redirects=False)
    assert published.status_code == 303 and rules.read_text() == draft


def test_console_pages_render_through_the_admin_api(client: TestClient) -> None:
    csrf = _signed_in(client)
    preview = client.post("/console/rules/preview", data={"rules": DEMO_RULES, "csrf": csrf, "visitor_id": "v-1",
                                                          "placements": "home product"})
    assert preview.status_code == 200 and 'data-side="draft" data-placement="home"' in preview.text
    models = client.get("/console/models")
    assert models.status_code == 200 and "Served here" in models.text
    ops = client.get("/console/ops")
    assert ops.status_code == 200 and "/v1/admin/rules/file" in ops.text  # the console's own admin calls
    numbers = client.get("/console/ops/numbers", headers={"x-csrf-token": csrf}).json()
    assert numbers["routes"] and numbers["health_status"] == 200
    experiments = client.get("/console/experiments")
    assert experiments.status_code == 200 and "No experiments in the live rules" in experiments.text
    triggers = client.get("/console/triggers")
    assert triggers.status_code == 200 and 'id="no-triggers"' in triggers.text
    segments = client.get("/console/segments")
    assert segments.status_code == 200 and 'id="segment-loyal"' in segments.text
    signed_out = client.post("/console/signout", follow_redirects=False)
    assert signed_out.status_code == 303
    assert client.get("/console/rules", follow_redirects=False).status_code == 303


def test_a_new_admin_key_closes_sessions(client: TestClient) -> None:
    _signed_in(client)
    client.app.state.settings.admin_key = "another-admin-key-0123456789"  # type: ignore[attr-defined]
    assert client.get("/console/rules", follow_redirects=False).status_code == 303
    client.app.state.settings.admin_key = ADMIN_KEY  # type: ignore[attr-defined]



def test_missing_pages_are_html_and_missing_api_paths_json(client: TestClient) -> None:
    for path in ("/no-such-page", "/product/NOPE", "/category/nothing-here", "/console/no-such-page"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "<h1>Page not found</h1>" in answer.text and "script-src 'self'" in answer.headers[
            "content-security-policy"], path
    for path in ("/v1/nothing", "/sdk/0.0.1/vitrine.js", "/assets/000000000000/x.css"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.json()["error"], path


@pytest.mark.parametrize("settings_overrides", [{}])
def test_without_the_shop_a_missing_page_is_json(client: TestClient) -> None:
    assert client.get("/no-such-page").json()["error"]
    assert "Page not found" in client.get("/console/nothing").text


def test_customer_page_erase_needs_the_token_and_the_id_typed_again(client: TestClient) -> None:
    csrf = _signed_in(client)
    events = [{"event_id": "ann-1", "type": "login", "visitor_id": "ann-phone", "customer_id": "ann"},
              {"event_id": "ann-2", "type": "purchase", "visitor_id": "ann-phone",
               "items": [{"item_id": "85123A", "quantity": 1, "price": 2.95}]}]
    assert client.post("/v1/events", json={"events": events}, headers=ADMIN).status_code == 200
    page = client.get("/console/customers", params={"id": "ann"})
    assert page.status_code == 200 and "<code>ann-phone</code>" in page.text
    visitor = client.get("/console/customers", params={"id": "ann-phone"})
    assert visitor.status_code == 200 and 'href="/console/customers?id=ann"' in visitor.text
    assert client.get("/console/customers", params={"id": "nobody"}).status_code == 404
    assert client.get("/console/customers", params={"id": "bad id!"}).status_code == 404
    export = client.get("/console/customers/ann/export")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert export.json()["ids"]["customer_ids"] == ["ann"]

    assert client.post("/console/customers/ann/erase", data={"csrf": "forged", "confirm": "ann"}).status_code == 403
    wrong = client.post("/console/customers/ann/erase", data={"csrf": csrf, "confirm": "an"})
    assert wrong.status_code == 422 and client.get("/v1/customers/ann", headers=ADMIN).status_code == 200
    done = client.post("/console/customers/ann/erase", data={"csrf": csrf, "confirm": "ann"})
    assert done.status_code == 200 and 'id="erased"' in done.text
    assert client.get("/v1/customers/ann", headers=ADMIN).status_code == 404


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def test_triggers_page_shows_each_trigger_through_the_admin_api(client: TestClient, redis_url: str,
                                                                 settings_overrides: dict[str, object]) -> None:
    Path(str(settings_overrides["rules_file"])).write_text(DEMO_RULES + """
triggers:
  cart-reminder:
    kind: cart_abandoned
    after: 60m
    channel: email
    control: 0
    payload: {title: "Your cart"}
""")
    assert client.post("/v1/admin/rules/reload", headers=ADMIN).status_code == 200
    armed = time.time() - 3700  # due 100 s ago
    events = [{"event_id": "c1", "type": "consent", "visitor_id": "v1", "timestamp": _at(armed),
               "properties": {"purpose": "email", "granted": True}},
              *({"event_id": f"a-{v}", "type": "add_to_cart", "visitor_id": v, "item_id": "85123A",
                 "timestamp": _at(armed)} for v in ("v1", "v2"))]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    client.portal.call(client.app.state.triggers.tick)  # type: ignore[attr-defined]
    csrf = _signed_in(client)

    page = client.get("/console/triggers")
    assert page.status_code == 200 and f'data-csrf="{csrf}"' in page.text
    assert 'aria-current="page">Triggers</a>' in page.text
    section = page.text[page.text.index('data-trigger="cart-reminder"'):]
    assert "cart_abandoned by email" in section and 'status-running">enabled<' in section
    assert "Control share 0%" in section
    assert '<tr data-arm="sent"><th scope="row">sent</th><td class="num" data-n="people">1</td>' in section
    assert '<th scope="row">no_consent</th><td class="num">1</td>' in section  # v2 never opted into email
    assert '<th scope="row">dead-lettered</th><td class="num">0</td>' in section
    assert 'href="/console/customers?id=v1">v1</a>' in section and "Your cart" in section
    assert "No lift yet" in section  # a control share of 0: nobody to compare with
    assert 'data-table="topic"' not in section  # nothing produced to a topic: no such table
    # In Kafka mode the documents also go to the outbound topic (streaming/outbound.py counts them).
    with sync_client(redis_url) as redis:
        redis.hset(trigger_keys.names(is_cluster_url(redis_url)).stats("cart-reminder"),
                   mapping={"topic:produced": 3, "topic:retried": 1})
    section = client.get("/console/triggers").text.split('data-trigger="cart-reminder"', 1)[1]
    topic = section[section.index('data-table="topic"'):]
    assert '<th scope="row">produced</th><td class="num">3</td>' in topic
    assert '<th scope="row">retried</th><td class="num">1</td>' in topic
