"""The snippet asks for all of a page's strips and blocks in one POST /v1/page, in a real browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api.web.webshop import browser, shop, strip_items, timings, watched  # noqa: F401 - fixtures
from tests.conftest import LiveServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _api_calls(page: Any) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    page.on("request", lambda r: calls.append((r.method, r.url)) if "/v1/" in r.url else None)
    return calls


def test_a_page_asks_once_for_all_its_strips_and_blocks(shop: LiveServer, browser: Any, tmp_path: Path) -> None:
    context, page, watch = watched(browser)
    calls = _api_calls(page)
    with page.expect_request(lambda r: r.url.endswith("/v1/page")) as sent:
        page.goto(shop.url + "/")
    asked = json.loads(sent.value.post_data)
    assert sent.value.headers["content-type"].startswith("text/plain")  # another origin: no preflight
    assert [p["placement"] for p in asked["placements"]] == ["home", "trending"]
    assert [b["slot"] for b in asked["blocks"]] == ["home_top"]
    assert len(strip_items(page)) == 8
    assert len(strip_items(page, '[data-vitrine-placement="trending"]')) > 0
    page.wait_for_selector('[data-vitrine-block="home_top"][data-vitrine-state]', state="attached")
    print(f"\nhome, one request: {timings(page, 'vitrine:strip:home')}")
    page.screenshot(path=str(tmp_path / "home-one-request.png"), full_page=True)
    assert calls == [("POST", shop.url + "/v1/page")]  # no consent yet: no events; one call for three parts

    page.locator("#for-you .vitrine-link").first.click()  # a product page: its own item in the request
    page.wait_for_selector('[data-vitrine-placement="product"][data-vitrine-state]')
    product = page.get_attribute("main", "data-vitrine-item")
    [(method, _)] = [c for c in calls[1:] if "/v1/page" in c[1]]
    assert method == "POST" and product
    assert not [c for c in calls if "/v1/recommendations" in c[1] or "/v1/blocks" in c[1]]

    with page.expect_response(lambda r: r.url.endswith("/v1/page")) as again:
        page.evaluate("window.Vitrine.refresh()")
    assert again.value.status == 200
    assert {p["item_id"] for p in json.loads(again.value.request.post_data)["placements"]} == {product}
    context.close()
    watch.check()


def test_a_bad_page_request_is_a_4xx_naming_the_field_and_the_page_still_renders(
        shop: LiveServer, browser: Any) -> None:
    context, page, watch = watched(browser, failing=("/v1/page",))
    page.goto(shop.url + "/cart")
    answer = page.evaluate("""async () => {
      const r = await fetch("/v1/page", {method: "POST", headers: {"content-type": "text/plain"},
                                         body: JSON.stringify({placements: [{placement: "home", n: 500}]})});
      return {status: r.status, body: await r.json()};
    }""")
    assert answer["status"] == 422
    assert [e["field"] for e in answer["body"]["errors"]] == ["placements[0].n"]
    # a page whose placement the rules do not know: the strip is hidden, the page stays whole, no script error
    page.evaluate("""() => {
      const strip = document.createElement("div");
      strip.setAttribute("data-vitrine-placement", "no_such_placement");
      document.querySelector("main").appendChild(strip);
    }""")
    with page.expect_response(lambda r: r.url.endswith("/v1/page")) as refused:
        page.evaluate("window.Vitrine.refresh()")
    assert refused.value.status == 422
    page.wait_for_selector('[data-vitrine-placement="no_such_placement"][data-vitrine-state="unavailable"]',
                           state="attached")
    assert page.locator("h1").count() > 0
    context.close()
    watch.check()
