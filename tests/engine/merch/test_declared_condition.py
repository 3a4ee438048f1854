"""Block eligibility on declared interests (engine.merch.blocks.eligible, `declared_categories` and
`declared_brands` conditions): by category path and by brand, case-insensitive, and validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.merch.blocks import Person, eligible
from engine.merch.schema import Condition
from engine.merch.segments import DEFAULT_SET
from engine.profiles import VisitorProfile

NOW = 1_790_000_000.0


def person(categories: list[str], brands: list[str]) -> Person:
    return Person(VisitorProfile(), None, None, NOW, 1800, DEFAULT_SET, declared=(categories, brands))


@pytest.mark.parametrize("condition, declared, expected", [
    ({"declared_categories": ["Garden"]}, (["garden.tools"], []), True),  # below it
    ({"declared_categories": ["garden"]}, (["gardening"], []), False),  # a path, not a prefix
    ({"declared_categories": ["garden.tools"]}, (["garden"], []), False),  # a parent is not below its child
    ({"declared_brands": ["ACME", "zenith"]}, ([], ["acme"]), True),
    ({"declared_brands": ["acme"]}, ([], []), False),
    ({"declared_categories": ["garden"], "declared_brands": ["acme"]}, (["garden"], ["other"]), False),  # all hold
    ({"visitor": "new"}, ([], []), True),  # nobody needs to have declared anything otherwise
])
def test_declared_conditions(condition: dict, declared: tuple[list[str], list[str]], expected: bool) -> None:
    assert eligible(Condition.model_validate(condition), person(*declared)) is expected


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValidationError, match="declared_categories"):
        Condition.model_validate({"declared_categories": []})
