"""The snippet's "Why?" tooltips: every reason code the API documents or the engine gives has its
own wording in ``vitrine.js``, with a placeholder exactly where the code names an item or category."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

SNIPPET = resources.files("api.web").joinpath("static/vitrine.js").read_text()
API_README = (Path(__file__).parents[3] / "api" / "README.md").read_text()
# given outside the placements table: merchandising, re-ranking, declared interests
OTHER_CODES = ("pinned", "promoted", "as_given", "declared_interest", "similar_content:ITEM")


def wording() -> dict[str, str]:
    table = re.search(r"var REASONS = \{(.*?)\};", SNIPPET, re.S)
    assert table, "vitrine.js has no REASONS table"
    return dict(re.findall(r'^\s*([a-z_]+): "((?:[^"\\]|\\.)*)",?$', table.group(1), re.M))


def documented_codes() -> set[str]:
    """The reason codes column of api/README.md's placements table, and the others."""
    codes = set(OTHER_CODES)
    for row in re.findall(r"^\| `[a-z]+` \|.*\| (.*) \|$", API_README, re.M):
        codes.update(re.findall(r"`([a-z_]+(?::[A-Z]+)?)`", row))
    return codes


def test_the_documented_codes_are_found() -> None:
    codes = documented_codes()
    assert {"because_you_viewed:ITEM", "session_neighbours", "sequence", "popular", "bestseller_in:CATEGORY",
            "viewed_before", "buy_again"} <= codes


@pytest.mark.parametrize("code", sorted(documented_codes()))
def test_every_reason_code_has_its_own_words(code: str) -> None:
    name, _, ref = code.partition(":")
    text = wording().get(name)
    assert text, f"no tooltip wording for {name!r} in vitrine.js REASONS"
    assert text != "Recommended for you"  # the fallback for codes it does not know
    placeholders = set(re.findall(r"\{(\w+)\}", text))
    expected = {"ITEM": {"item"}, "CATEGORY": {"category"}}.get(ref, set())
    assert placeholders == expected, (code, text)


def test_no_two_codes_say_the_same() -> None:
    texts = list(wording().values())
    assert len(texts) == len(set(texts))
