"""The rules reader never fails in an unexpected way: whatever the text, it returns rules or raises
``RulesInvalid`` whose errors name a line of the file. Run on the complete example
(engine/merch/example-rules.yaml) with random edits, on random YAML-ish text, and on a list of
known-nasty inputs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.merch.live import parse_snapshot
from engine.merch.loader import RulesInvalid, load_rules
from engine.merch.schema import RulesFile
from tests.engine.merch.test_loader import CATALOGUE, example_rules

EXAMPLE = example_rules()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_EXAMPLE = settings(FUZZ, max_examples=100)  # ~80 ms to read the example
# YAML's own syntax, line breaks of every kind, characters YAML refuses (C0/C1 controls, a lone
# surrogate, U+FFFE), a BOM, and digits for huge numbers.
SPICE = list(":-[]{},&*!|>'\"%@`#?<= \t\n\r") + ["\x00", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", "\u2028",
                                                  "\ud800", "\ufeff", "\ufffe", "9" * 5000, "\U0001f600"]


def check(text: str) -> None:
    """Rules, or RulesInvalid with each error on a line of the text."""
    try:
        rules = load_rules(text, "rules.yaml", CATALOGUE.__contains__, max_window_s=30 * 86400)
    except RulesInvalid as exc:
        assert exc.errors
        last = text.count("\n") + text.count("\r") + 1
        for error in exc.errors:
            assert error.file == "rules.yaml" and error.message
            assert error.line is None or 1 <= error.line <= last, (error, last)
        return
    assert isinstance(rules, RulesFile)


@st.composite
def edited_example(draw: st.DrawFn) -> str:
    """The example rules with a few characters inserted, deleted or replaced."""
    text = EXAMPLE
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        insert = draw(st.one_of(st.sampled_from(SPICE), st.text(max_size=3)))
        text = text[:at] + insert + text[at + cut:]
    return text


@FUZZ_EXAMPLE
@given(edited_example())
def test_the_example_rules_edited_at_random(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(SPICE), st.characters()), max_size=100).map("".join))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    try:
        parse_snapshot(data, "rules.yaml", None)
    except RulesInvalid as exc:
        assert exc.errors


def nested(depth: int, open_: str, close: str) -> str:
    return "placements: " + open_ * depth + close * depth + "\n"


NASTY = {
    "form feed": "placements:\n  home:\x0c\n    candidates: 40\n",
    "form feed alone": "\x0c",
    "NUL": "placements:\x00\n",
    "escape character": "blocks:\n  - {id: a, slot: s, title: \"\x1b[31mred\"}\n",
    "lone surrogate": "placements:\n  home: {candidates: \ud800}\n",
    "10,000 [": nested(10_000, "[", "]"),
    "10,000 {": "x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "512 KiB of [": "placements: " + "[" * 512 * 1024 + "\n",
    "deep block mapping": "".join("  " * i + f"k{i}:\n" for i in range(500)),
    "deep block sequence": "".join("  " * i + "-\n" for i in range(500)),
    "512 KiB of - ": "placements:\n" + "- " * 256 * 1024 + "x\n",
    "huge integer": "placements:\n  home:\n    candidates: " + "9" * 5_000 + "\n",
    "huge sexagesimal": "placements:\n  home:\n    candidates: 1" + "0" * 5_000 + ":30\n",
    "huge float": "control_group: {share: 1e999999}\n",
    "nan": "control_group: {share: .nan}\nexperiments:\n  e: {placement: home, variants: [{name: a, weight: .nan}]}\n",
    "infinite weight": "experiments:\n  e: {placement: home, variants: [{name: a, weight: .inf}]}\n",
    "huge duration": "frequency: {max: 3, window: " + "9" * 5_000 + "d}\n",
    "last day of the calendar": "campaigns:\n  c: {start: 9999-12-30, end: 9999-12-31}\n",
    "first day of the calendar": "campaigns:\n  c: {start: 0001-01-01}\n",
    "date-times past the ends of the calendar in UTC":
        "campaigns:\n  c: {start: '0001-01-01T00:00:00+01:00', end: '9999-12-31T23:59:59-05:00'}\n",
    "pin until the end of time": "placements:\n  home:\n    pins: [{item: '22086', slot: 1, until: 9999-12-31}]\n",
    "tabs": "placements:\n\thome: {}\n",
    "BOM": "\ufeffplacements:\n  home: {}\n",
    "BOM inside": "placements:\n  home: {}\n\ufeff  product: {}\n",
    "CR line breaks": "placements:\r  home:\r    candidates: x\r",
    "NEL and LS": "placements:\x85  home: {}\u2028",
    "billion laughs": "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n",
    "many documents": "---\na: 1\n" * 100,
    "directive": "%YAML 1.1\n%TAG ! tag:yaml.org,2002:\n---\nplacements: !map {}\n",
    "binary": "placements: !!binary aGVsbG8=\n",
    "python tags": "placements: !!python/object/new:os.system [echo]\n",
    "complex key": "? [a, b]\n: 1\n",
    "null key": "~: 1\nplacements: {~: {}}\n",
    "numeric keys": "placements: {1: {candidates: 1}}\n",
    "template braces": "blocks:\n  - {id: a, slot: s, title: '{{{first_name|{}}}}'}\n",
    "template huge": "blocks:\n  - {id: a, slot: s, title: '" + "{visits}" * 60 + "'}\n",
    "category with control": "placements:\n  home: {filter: {category_in: [\"a\\u0000b\"]}}\n",
    "empty": "",
    "only a comment": "# rules\n",
    "scalar document": "42\n",
    "null document": "~\n",
}


@pytest.mark.parametrize("text", NASTY.values(), ids=NASTY.keys())
def test_nasty_inputs(text: str) -> None:
    check(text)
    check(EXAMPLE + text)  # the same after a valid file's worth of lines


@pytest.mark.parametrize("data", [
    b"\xff\xfeplacements:\n",  # UTF-16 BOM
    "placements:\n  home: {}\n".encode("utf-16"),
    b"placements:\n  home:\n    candidates: \xe9\n",  # Latin-1
    b"\xef\xbb\xbfplacements:\n  home: {}\n",  # UTF-8 BOM: fine
    b"placements:\n  home: {candidates: \xed\xa0\x80}\n",  # an encoded surrogate
])
def test_bytes_that_are_not_utf8_text(data: bytes) -> None:
    try:
        parse_snapshot(data, "rules.yaml", None)
    except RulesInvalid as exc:
        assert exc.errors and all(e.line is None or e.line >= 1 for e in exc.errors)
