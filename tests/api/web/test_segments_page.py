"""The segments page's rendering, fed with documents shaped as ``GET /v1/admin/segments`` answers
(pure: the template and its view function, no server)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from api.web.console.segments import segments_context
from api.web.pages import templates

DOCUMENT = {
    "segments": [
        {"name": "loyal", "source": "default", "count": 12, "sample": ["13085", "c:with@odd+chars"]},
        {"name": "vip", "source": "rules", "count": 340, "sample": [f"c{i}" for i in range(10)]},
        {"name": "lapsed", "source": "default", "count": 0, "sample": []},
    ],
    "count_method": "exact scan of customer profiles",
    "sample_size": 10,
    "computed_at": "2026-12-04T21:00:00+00:00",
}


class Rows(HTMLParser):
    """Each segment row's name, cells and member links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-segment"):
            self.rows.append({"name": a["data-segment"], "cells": [], "links": []})
        elif self.rows and tag in ("td", "th"):
            self._cell = []
        elif self.rows and tag == "a":
            self.rows[-1]["links"].append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def render(status: int, body: Any) -> str:
    return templates.get_template("console/segments.html").render(
        request=None, csrf="token", title="Segments", section="segments", **segments_context(status, body, ""))


def test_each_segment_with_its_count_and_members_linking_to_the_customer_page() -> None:
    html = render(200, DOCUMENT)
    rows = Rows()
    rows.feed(html)
    assert [r["name"] for r in rows.rows] == ["vip", "loyal", "lapsed"]  # largest first
    vip, loyal, lapsed = rows.rows
    assert vip["cells"][:3] == ["vip", "the rules file", "340"] and len(vip["links"]) == 10
    assert loyal["cells"][1] == "Vitrine"
    assert loyal["links"] == ["/console/customers?id=13085", "/console/customers?id=c%3Awith%40odd%2Bchars"]
    assert lapsed["cells"][2] == "0" and lapsed["links"] == []
    assert "exact scan of customer profiles" in html and "up to 10 members" in html


def test_an_error_is_shown_not_hidden() -> None:
    context = segments_context(503, {"error": "Redis is unavailable"}, "Redis is unavailable")
    assert context["error"] == "Redis is unavailable" and context["segments"] == []
    assert "Redis is unavailable" in templates.get_template("console/segments.html").render(
        request=None, csrf="t", title="Segments", section="segments", **context)


def test_member_ids_are_escaped() -> None:
    hostile = {**DOCUMENT, "segments": [{"name": "x", "source": "rules", "count": 1, "sample": ["<script>"]}]}
    html = render(200, hostile)
    assert "<script>" not in html.split("</head>")[1]
