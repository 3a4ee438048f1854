"""The web face in a real browser (headless Chromium): the demo shop with the site snippet, and the
merchandiser console, each against a real server and Redis. Screenshots go to the test's tmp folder;
page and strip timings are printed (run with -s to see them), not asserted."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.store import keys
from models.customer_value import save as save_shop_model
from tests.api import test_people as people
from tests.conftest import ADMIN, LiveServer
from tests.api.web.webshop import browser, shop, strip_items, timings, watched  # noqa: F401 - fixtures
from tests.redis_clients import sync_client

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _categories(shop: LiveServer, ids: list[str]) -> list[str]:
    items = shop.server.config.app.state.engine.catalogue.current.items
    return [(items[i].category or "").split(".")[0] for i in ids if i in items]


def _grant(page: Any) -> None:
    page.wait_for_selector("[data-vitrine-consent-banner]:not([hidden])")
    with page.expect_response(lambda r: "/v1/events" in r.url and r.request.method == "POST"):
        page.get_by_role("button", name="Yes, personalise").click()


def _view_product(page: Any, link: Any) -> None:
    """Open a product page from ``link`` and wait until the snippet sent its product_view."""
    with page.expect_response(lambda r: "/v1/events" in r.url and r.request.method == "POST") as answer:
        link.click()
    assert answer.value.status == 200, answer.value.text()


def test_new_visitor_browses_a_category_and_the_home_strip_moves_toward_it(
        shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    context, page, watch = watched(browser)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/items/" in r.url else None)
    page.goto(shop.url + "/")
    _grant(page)
    before = strip_items(page)
    print(f"\nhome, new visitor: {timings(page, 'vitrine:strip:home')}")
    page.screenshot(path=str(tmp_path / "01-home-new-visitor.png"), full_page=True)
    assert len(before) == 8

    # the largest category that the first strip barely shows
    shown = Counter(_categories(shop, before))
    nav = page.eval_on_selector_all("nav[aria-label=Categories] a", "els => els.map(e => e.textContent)")
    category = min(nav[:6], key=lambda name: shown[name.lower()])
    page.get_by_role("link", name=category, exact=True).click()
    page.wait_for_selector(".grid .product-link")
    page.screenshot(path=str(tmp_path / "02-category.png"), full_page=True)
    for index in range(3):
        _view_product(page, page.locator(".grid .product-link").nth(index * 3))
        page.wait_for_selector('[data-vitrine-placement="product"][data-vitrine-state]')
        if index == 0:
            page.screenshot(path=str(tmp_path / "03-product.png"), full_page=True)
        page.go_back()
        page.wait_for_selector(".grid .product-link")

    page.goto(shop.url + "/")
    after = strip_items(page)
    print(f"home, after three {category} products: {timings(page, 'vitrine:strip:home')}")
    page.focus("#for-you .vitrine-item:first-child .vitrine-why")  # keyboard: the tooltip shows on focus too
    page.screenshot(path=str(tmp_path / "04-home-after-browsing.png"), full_page=True)
    share_before = shown[category.lower()]
    share_after = Counter(_categories(shop, after))[category.lower()]
    assert share_after > share_before, (category, before, after)
    tip = page.inner_text("#for-you .vitrine-item:first-child .vitrine-tip")
    assert tip and tip != "Recommended for you"
    assert asked == []  # the strips' answers carried their items' titles and prices (fields=)
    context.close()
    watch.check()


def test_declining_consent_leaves_no_profile(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    context, page, watch = watched(browser)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/events" in r.url else None)
    page.goto(shop.url + "/")
    page.wait_for_selector("[data-vitrine-consent-banner]:not([hidden])")
    page.screenshot(path=str(tmp_path / "01-consent-banner.png"), full_page=True)
    page.get_by_role("button", name="No, thanks").click()
    assert page.is_hidden("[data-vitrine-consent-banner]")
    strip_items(page)  # the page still gets the non-personal strip
    page.get_by_role("navigation", name="Categories").get_by_role("link").first.click()
    for index in range(2):
        page.locator(".grid .product-link").nth(index).click()
        page.wait_for_selector('[data-vitrine-placement="product"][data-vitrine-state]')
        page.get_by_role("button", name="Add to basket").click()
        page.wait_for_url("**/cart")
        page.go_back()
        page.go_back()
    page.goto(shop.url + "/")
    strip_items(page)
    page.screenshot(path=str(tmp_path / "02-home-declined.png"), full_page=True)
    page.close()  # pagehide: nothing may leave now either
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    context.close()

    assert sent == []
    visitor = cookies["vt_vid"]
    assert cookies["vt_consent"] == "0"
    answer = httpx.get(f"{shop.url}/v1/profiles/{visitor}", headers=ADMIN)
    assert answer.status_code == 404, answer.text
    client = sync_client(shop.server.config.app.state.settings.redis_url)
    assert client.exists(keys.visitor(visitor)) == 0
    client.close()
    watch.check()


@pytest.mark.parametrize("outage", ["hangs", "refuses"])
def test_the_page_renders_without_strips_when_the_api_is_down(shop: LiveServer, browser: Any, tmp_path: Path,
                                                              outage: str) -> None:
    """The snippet's calls hang (answered by nobody: its timeout ends them) or are refused; the
    page renders as it would without Vitrine, and no script fails."""
    context, page, watch = watched(browser, failing=("/v1/",) if outage == "refuses" else ())
    if outage == "hangs":
        context.route("**/v1/**", lambda route: None)
    else:
        context.route("**/v1/**", lambda route: route.abort("connectionrefused"))
    page.goto(shop.url + "/")
    page.get_by_role("button", name="Yes, personalise").click()
    page.wait_for_selector('#for-you[data-vitrine-state="unavailable"]', state="attached")
    print(f"\nhome, API {outage}: {timings(page, 'vitrine:strip:home')}")
    assert page.is_hidden("#for-you")
    assert page.inner_text("h1") == "Gifts and homeware"
    page.screenshot(path=str(tmp_path / f"home-api-{outage}.png"), full_page=True)
    page.get_by_role("navigation", name="Categories").get_by_role("link").first.click()
    page.locator(".grid .product-link").first.click()
    page.wait_for_selector('[data-vitrine-placement="product"][data-vitrine-state="unavailable"]', state="attached")
    page.get_by_role("button", name="Add to basket").click()
    page.wait_for_url("**/cart")
    assert page.locator("tbody tr").count() == 1
    context.unroute_all(behavior="ignoreErrors")
    context.close()
    watch.check()


def test_merchandiser_breaks_fixes_previews_publishes_and_rolls_back(
        shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    shop_context, shop_page, shop_watch = watched(browser)
    shop_page.goto(shop.url + "/")
    _grant(shop_page)
    live_strip = strip_items(shop_page)
    visitor = {c["name"]: c["value"] for c in shop_context.cookies()}["vt_vid"]
    items = shop.server.config.app.state.engine.catalogue.current.items
    pinned = next(i for i, item in sorted(items.items()) if item.in_stock and i not in live_strip
                  and item.category and not item.category.startswith("seasonal"))

    context, page, watch = watched(browser)
    page.goto(shop.url + "/console")
    page.wait_for_url("**/console/signin")
    page.get_by_label("Admin API key").fill("not-the-key-000000000")
    watch.failing.append("/console/signin")  # the wrong key's answer is a 403 page
    page.get_by_role("button", name="Sign in").click()
    assert "That is not the admin key." in page.inner_text("[role=alert]")
    watch.failing.remove("/console/signin")
    page.get_by_label("Admin API key").fill(ADMIN["X-API-Key"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/rules")
    cookie = next(c for c in context.cookies() if c["name"] == "vt_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.wait_for_selector("#check-status.ok")
    page.screenshot(path=str(tmp_path / "01-console-rules.png"), full_page=True)
    original = page.input_value("#rules")
    original_version = page.inner_text("#live-version")

    broken = original.replace("factor: 1.5", "factor: lots")
    line = broken.splitlines().index("        factor: lots") + 1
    page.fill("#rules", broken)
    page.wait_for_selector("#check-status.bad")
    errors = page.inner_text("#rules-errors")
    assert f"line {line}:" in errors, errors
    assert page.is_disabled("#publish-button")
    page.screenshot(path=str(tmp_path / "02-console-broken.png"), full_page=True)

    draft = original.replace("  product:\n", f"    pins:\n      - {{item: \"{pinned}\", slot: 1}}\n  product:\n")
    page.fill("#rules", draft)
    page.wait_for_selector("#check-status.ok")
    assert page.is_enabled("#publish-button")
    checked_version = page.inner_text("#check-status").rsplit(" ", 1)[1]
    page.fill("#visitor_id", visitor)
    page.fill("#placements", "home")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector(".preview")
    assert page.get_attribute('ol[data-side="draft"][data-placement="home"] li:first-child', "data-item-id") == pinned
    assert page.get_attribute('ol[data-side="live"][data-placement="home"] li:first-child', "data-item-id") != pinned
    page.screenshot(path=str(tmp_path / "03-console-preview.png"), full_page=True)

    page.get_by_role("button", name="Publish").click()
    page.wait_for_selector("p.notice")
    assert page.inner_text("#live-version") == checked_version != original_version  # the text as checked
    page.screenshot(path=str(tmp_path / "04-console-published.png"), full_page=True)

    shop_page.goto(shop.url + "/")
    assert strip_items(shop_page)[0] == pinned
    shop_page.screenshot(path=str(tmp_path / "05-shop-pinned.png"), full_page=True)

    page.click(f'button.rollback[data-version="{original_version}"]')
    page.wait_for_selector("p.notice")
    assert page.inner_text("#live-version") == original_version
    page.screenshot(path=str(tmp_path / "06-console-rolled-back.png"), full_page=True)
    shop_page.goto(shop.url + "/")
    assert strip_items(shop_page)[0] != pinned

    for name in ("experiments", "models", "ops"):
        page.goto(f"{shop.url}/console/{name}")
        page.wait_for_selector("h1")
        page.screenshot(path=str(tmp_path / f"07-console-{name}.png"), full_page=True)
    context.close()
    shop_context.close()
    watch.check()
    shop_watch.check()


def _sign_in(page: Any, shop: LiveServer) -> None:
    page.goto(shop.url + "/console")
    page.get_by_label("Admin API key").fill(ADMIN["X-API-Key"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/rules")


def test_merchandiser_looks_up_exports_and_erases_a_customer(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    settings = shop.server.config.app.state.settings
    with httpx.Client(base_url=shop.url) as api:
        people.shop(api, "alice", "a-laptop", "a-phone", time.time())  # three orders on two devices
    save_shop_model(settings.models_dir, people.MODEL, {})
    context, page, watch = watched(browser)
    _sign_in(page, shop)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Customers").click()
    page.get_by_label("Customer or visitor id").fill("alice")
    page.get_by_role("button", name="Look up").click()
    page.wait_for_selector("#person-title")
    assert "a-laptop" in page.inner_text("#h-identity + dl") and "a-phone" in page.inner_text("#h-identity + dl")
    assert "loyal" in page.eval_on_selector_all("#segments a", "els => els.map(e => e.textContent)")
    assert page.inner_text("#consent").count("not_given") >= 2
    assert page.inner_text("[data-score=churn_risk]") in ("low", "medium", "high")
    reasons = page.eval_on_selector_all("#score-reasons li", "els => els.map(e => e.textContent)")
    assert reasons and any("orders" in r for r in reasons) and all("churn" in r for r in reasons)
    assert page.locator("#scores svg rect.bar").count() == len(reasons)
    page.screenshot(path=str(tmp_path / "01-console-customer.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#export-link")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["ids"]["customer_ids"] == ["alice"] and set(exported["ids"]["visitor_ids"]) == {"a-laptop",
                                                                                                    "a-phone"}
    assert len([e for e in exported["events"] if e["type"] == "purchase"]) == 3

    page.click("#erase-link")
    page.wait_for_selector("#confirm")
    page.screenshot(path=str(tmp_path / "02-console-erase-confirm.png"), full_page=True)
    watch.failing.append("/console/customers/alice/erase")  # the wrong confirmation's answer is a 422 page
    page.fill("#confirm", "alic")
    page.get_by_role("button", name="Erase for good").click()
    page.wait_for_selector("[role=alert]")
    assert httpx.get(f"{shop.url}/v1/customers/alice", headers=ADMIN).status_code == 200
    page.fill("#confirm", "alice")
    page.get_by_role("button", name="Erase for good").click()
    page.wait_for_selector("#erased")
    page.screenshot(path=str(tmp_path / "03-console-erased.png"), full_page=True)
    assert httpx.get(f"{shop.url}/v1/customers/alice", headers=ADMIN).status_code == 404
    assert httpx.get(f"{shop.url}/v1/profiles/a-phone", headers=ADMIN).status_code == 404
    watch.failing.append("/console/customers")  # looking the erased customer up again: a 404 page
    page.goto(f"{shop.url}/console/customers?id=alice")
    assert "No customer and no visitor" in page.inner_text("[role=alert]")
    context.close()
    watch.check()


def test_segments_page_counts_members_and_links_to_them(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    rules = Path(shop.server.config.app.state.settings.rules_file)
    rules.write_text(rules.read_text() + "segments:\n  big_spenders:\n    description: 60 or more spent\n"
                     "    revenue: {min: 60}\n")
    assert httpx.post(f"{shop.url}/v1/admin/rules/reload", headers=ADMIN).status_code == 200
    with httpx.Client(base_url=shop.url) as api:
        people.shop(api, "alice", "a-laptop", "a-phone", time.time())  # three orders, 65.90 in all
    context, page, watch = watched(browser)
    _sign_in(page, shop)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Segments").click()
    page.wait_for_selector("#segment-big_spenders")
    assert "the rules file" in page.inner_text("#segment-big_spenders")
    assert int(page.inner_text("#segment-big_spenders td.num")) >= 2  # alice's two cookies: the unit is the cookie
    assert int(page.inner_text("#segment-loyal td.num")) >= 2
    page.screenshot(path=str(tmp_path / "01-console-segments.png"), full_page=True)
    page.locator("#segment-big_spenders a").first.click()
    page.wait_for_selector("#person-title")
    context.close()
    watch.check()


def test_experiments_page_and_missing_pages(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    rules = Path(shop.server.config.app.state.settings.rules_file)
    rules.write_text(rules.read_text() + "control_group: {share: 10%}\nexperiments:\n  home-strip:\n"
                     "    placement: home\n    end: 2999-01-01\n    variants:\n      - {name: blend, weight: 1}\n"
                     "      - {name: trending-only, weight: 1, scenarios: [trending, popular]}\n")
    assert httpx.post(f"{shop.url}/v1/admin/rules/reload", headers=ADMIN).status_code == 200
    context, page, watch = watched(browser, failing=("/no-such-page", "/console/no-such-page"))
    _sign_in(page, shop)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Experiments").click()
    page.wait_for_selector('[data-experiment="home-strip"]')
    shown = page.eval_on_selector_all("[data-experiment]", "els => els.map(e => e.dataset.experiment)")
    assert shown == ["home-strip", "holdout"]
    text = page.inner_text('[data-experiment="home-strip"]')
    assert "on home" in text and "running" in text and "blend (1), trending-only (1)" in text
    assert "to 2999-01-02" in text  # an end date includes its day
    page.screenshot(path=str(tmp_path / "01-console-experiments.png"), full_page=True)

    for path in ("/no-such-page", "/console/no-such-page"):
        answer = page.goto(shop.url + path)
        assert answer is not None and answer.status == 404
        assert page.inner_text("h1") == "Page not found"
        page.screenshot(path=str(tmp_path / f"404{path.replace('/', '-')}.png"), full_page=True)
    page.get_by_role("link", name="Back to the console").click()
    page.wait_for_url("**/console/rules")
    context.close()
    watch.check()


def test_triggers_page_lists_a_trigger_with_its_numbers(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    rules = Path(shop.server.config.app.state.settings.rules_file)
    rules.write_text(rules.read_text() + "triggers:\n  cart-reminder:\n    kind: cart_abandoned\n    after: 60m\n"
                     "    channel: email\n    control: 50%\n    payload: {title: Your cart}\n")
    assert httpx.post(f"{shop.url}/v1/admin/rules/reload", headers=ADMIN).status_code == 200
    armed = datetime.fromtimestamp(time.time() - 3700, timezone.utc).isoformat()  # due 100 s ago
    visitors = [f"tg-{i}" for i in range(8)]
    events = [{"event_id": f"c-{v}", "type": "consent", "visitor_id": v, "timestamp": armed,
               "properties": {"purpose": "email", "granted": True}} for v in visitors]
    events += [{"event_id": f"a-{v}", "type": "add_to_cart", "visitor_id": v, "item_id": "85123A", "timestamp": armed}
               for v in [*visitors, "tg-no-consent"]]
    with httpx.Client(base_url=shop.url, headers=ADMIN) as api:
        assert api.post("/v1/events", json={"events": events}).status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server's own runner decides what is due
            report = api.get("/v1/admin/triggers/cart-reminder").json()
            if sum(a["people"] for a in report["arms"].values()) == len(visitors):
                break
            time.sleep(0.2)
        arms = report["arms"]
        assert arms["sent"]["people"] and arms["control"]["people"], arms
        purchases = [{"event_id": f"p-{v}", "type": "purchase", "visitor_id": v, "item_id": "85123A",
                      "price": 2.5 + i, "quantity": 1} for i, v in enumerate(visitors)]
        assert api.post("/v1/events", json={"events": purchases}).status_code == 200
    context, page, watch = watched(browser)
    _sign_in(page, shop)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Triggers").click()
    page.wait_for_selector('[data-trigger="cart-reminder"]')
    section = page.locator('[data-trigger="cart-reminder"]')
    assert "cart_abandoned by email" in section.inner_text() and "Control share 50%" in section.inner_text()
    for arm in ("sent", "control"):
        assert int(section.locator(f'[data-arm="{arm}"] [data-n="people"]').inner_text()) == arms[arm]["people"]
    assert int(section.locator('[data-arm="sent"] [data-n="deliveries"]').inner_text()) == arms["sent"]["people"]
    assert section.locator("svg.chart rect.bar").count() >= 1  # lift of sent over control, with its interval
    assert "no_consent" in section.locator('[data-table="suppressed"]').inner_text()
    assert section.locator('[data-table="deliveries"] tbody tr').count() == arms["sent"]["people"]
    page.screenshot(path=str(tmp_path / "01-console-triggers.png"), full_page=True)
    context.close()
    watch.check()
