"""Block templates: fields, fallbacks for missing values, and hostile input."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Any

import pytest

from engine.merch.blocks import Person, choose, template_values
from engine.merch.blocks import render as render_block
from engine.catalog import Catalogue, Item
from engine.merch.exposure import Exposure
from engine.profiles.shapes import CustomerProfile, VisitorProfile
from engine.merch.live import parse_snapshot
from engine.merch.templates import TemplateError, parse
from tests.engine.merch.test_loader import example_rules

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


@pytest.mark.parametrize("text, values, expected", [
    ("Welcome back{first_name| to the shop}", {"first_name": "Anne"}, "Welcome back Anne"),
    ("Welcome back{first_name| to the shop}", {}, "Welcome back to the shop"),
    ("Hello{ first_name}!", {"first_name": "Paul"}, "Hello Paul!"),
    ("Hello{ first_name}!", {}, "Hello!"),
    ("Hello { first_name }!", {"first_name": "Paul"}, "Hello Paul!"),  # never doubled
    ("{ first_name }, hello", {"first_name": "Paul"}, "Paul, hello"),  # nothing before: no space
    ("Bonjour {first_name | cher client }.", {}, "Bonjour cher client."),  # spaces before | and } lay out
    ("{first_name|}{ visits} visits", {"visits": "3"}, "3 visits"),
])
def test_spaces_inside_the_braces_belong_to_the_substitution(text: str, values: dict[str, str], expected: str) -> None:
    assert render(text, values) == expected


# ------------------------------------------------------------------ the complete rules example

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc).timestamp()  # the Christmas campaign runs
DAY = 86400.0
CATALOGUE = Catalogue(version=1, items={"85123A": Item(item_id="85123A", title="White hanging heart T-light holder",
                                                       category="lighting.candles", price=2.55)})


def visitor(**fields: Any) -> VisitorProfile:
    return VisitorProfile(**{"first_seen": NOW - 30 * DAY, "last_seen": NOW - 60, "visits": 1,
                             "session_start": NOW - 600, **fields})


def customer(**traits: str) -> CustomerProfile:
    return CustomerProfile(first_seen=NOW - 300 * DAY, last_seen=NOW - 60, traits=traits)


RETURNING = {"visits": 3, "last_seen": NOW - 2 * DAY, "session_start": NOW - 2 * DAY - 600,
             "session_items": ["85123A"]}  # the last visit, two days ago, ended with a view
PEOPLE = [  # (who, visitor profile, customer profile, block, rendered title, body, cta)
    ("gold customer who likes candles", visitor(category_affinity={"lighting.candles": 4.0, "kitchen": 1.0}),
     customer(first_name="Anne", tier="gold"), "xmas-vip",
     "<b>Bonjour Anne</b>, the Christmas collection is open",
     "Early access to candles and T-light holders before anyone else.", "See the collection"),
    ("platinum customer, no name, no history", visitor(), customer(tier="platinum"), "xmas-vip",
     "<b>Bonjour cher client</b>, the Christmas collection is open",
     "Early access to our gift ideas before anyone else.", "See the collection"),
    ("gold customer whose name is markup", visitor(), customer(first_name="<Zoé & Co>", tier="gold"), "xmas-vip",
     "<b>Bonjour &lt;Zoé &amp; Co&gt;</b>, the Christmas collection is open",
     "Early access to our gift ideas before anyone else.", "See the collection"),
    ("visitor with one item in the cart", visitor(cart={"85123A": 1}, cart_updated=NOW - 60), None,
     "cart-reminder", "Items waiting in your basket: 1", "", ""),
    ("returning silver customer", visitor(**RETURNING), customer(first_name="Anne", tier="silver"),
     "welcome-back", "Welcome back Anne", "Still thinking about the White hanging heart T-light holder?", ""),
    ("returning visitor", visitor(**RETURNING), None, "welcome-back", "Welcome back to the shop",
     "Still thinking about the White hanging heart T-light holder?", ""),
    ("new visitor who likes baking", visitor(category_affinity={"kitchen.baking": 2.0, "lighting": 1.5}), None,
     "kitchen-lovers", "New in the kitchen", "", ""),
    ("new visitor", visitor(), None, "hello", "Hello and welcome! Take a look at our gift ideas", "", ""),
    ("customer who likes Christmas decorations",
     visitor(category_affinity={"seasonal.christmas": 3.0, "kitchen.baking": 0.5}), customer(first_name="Paul"),
     "hello", "Hello Paul! Take a look at Christmas decorations", "", ""),
]


@pytest.mark.parametrize("who, visitor_profile, customer_profile, block_id, title, body, cta", PEOPLE,
                         ids=[p[0] for p in PEOPLE])
def test_the_example_rules_blocks_read_as_written(who: str, visitor_profile: VisitorProfile,
                                                   customer_profile: CustomerProfile | None, block_id: str,
                                                   title: str, body: str, cta: str) -> None:
    """The complete rules example, as written, for crafted visitors: which block of
    `home_top` each gets, and its exact text."""
    snap = parse_snapshot(example_rules().encode(), "example-rules.yaml", None)
    person = Person(visitor_profile, customer_profile, "c-1" if customer_profile else None, NOW, 1800,
                    snap.segments)
    block, _ = choose(snap, "home_top", person, Exposure())
    assert block is not None and block.id == block_id
    rendered = render_block(block, template_values(person, CATALOGUE, snap), snap)
    assert (rendered["title"], rendered["body"], rendered["cta"]) == (title, body, cta)
