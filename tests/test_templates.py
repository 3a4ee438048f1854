"""Block templates: fields, fallbacks for missing values, and hostile input."""

from __future__ import annotations

import html

import pytest

from engine.templates import TemplateError, parse

HOSTILE = [
    "<script>alert(1)</script>",
    "{first_name}",
    "{0.__class__.__mro__}",
    "{{tier}}",
    "\" onmouseover=\"alert(1)",
    "${7*7} {{7*7}} <%= 7*7 %>",
]


def render(text: str, values: dict[str, str | None], *, as_html: bool = False,
           defaults: dict[str, str] | None = None) -> str:
    return parse(text).render(values, defaults or {}, as_html=as_html)


def test_fields_are_filled_in() -> None:
    assert render("Bonjour {first_name}, vos {favourite_category} !",
                  {"first_name": "Anne", "favourite_category": "mugs"}) == "Bonjour Anne, vos mugs !"


def test_missing_fields_use_inline_then_file_then_built_in_fallbacks() -> None:
    text = "Bonjour{first_name| cher client}. Encore des {favourite_category} ? {last_visit_item}"
    assert render(text, {}) == "Bonjour cher client. Encore des our selection ? what you saw last time"
    assert render(text, {"first_name": ""}, defaults={"favourite_category": "idées cadeaux"}) == (
        "Bonjour cher client. Encore des idées cadeaux ? what you saw last time")
    assert render("Bonjour {first_name}!", {"first_name": None}) == "Bonjour !"


def test_literal_braces() -> None:
    assert render("{{not a field}} {visits}", {"visits": "3"}) == "{not a field} 3"


@pytest.mark.parametrize("text, message", [
    ("Hello {name}", "unknown field {name}"),
    ("Hello {first_name.__class__}", "unknown field {first_name.__class__}"),
    ("Hello {first_name!r}", "unknown field {first_name!r}"),
    ("Hello {0}", "unknown field {0}"),
    ("Hello {first_name", "unmatched '{' at character 7"),
    ("Hello }", "unmatched '}' at character 7"),
])
def test_only_known_plain_fields_parse(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")
                       .replace("!", r"\!")):
        parse(text)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_come_back_as_text_never_evaluated(value: str) -> None:
    assert render("Hi {first_name}!", {"first_name": value}) == f"Hi {value}!"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_escaped_in_html_blocks(value: str) -> None:
    out = render("<b>Hi {first_name}</b>", {"first_name": value}, as_html=True)
    inner = out.removeprefix("<b>Hi ").removesuffix("</b>")
    assert "<" not in inner and ">" not in inner and '"' not in inner
    assert html.unescape(inner) == value
