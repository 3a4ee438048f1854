"""engine.profiles.affinity: category paths compare by path, never by string prefix, and affinities
compare relative to the person's strongest."""

from __future__ import annotations

import pytest

from engine.profiles import CustomerProfile, VisitorProfile
from engine.profiles.affinity import (
    affinity_above,
    affinity_below,
    affinity_owner,
    in_category,
    lineage,
    relative,
    under,
)


def test_lineage_lists_the_parents_most_general_first() -> None:
    assert lineage("home.kitchen.mugs") == ("home", "home.kitchen", "home.kitchen.mugs")
    assert lineage("kitchen") == ("kitchen",)


@pytest.mark.parametrize("category, prefix, expected", [
    ("kitchen", "kitchen", True),
    ("kitchen.mugs", "kitchen", True),
    ("kitchen.mugs.large", "kitchen", True),
    ("kitchenware", "kitchen", False),  # shares the string, not the path
    ("kitchen-mugs", "kitchen", False),
    ("kitchen", "kitchen.mugs", False),  # a parent is not below its child
    ("home.kitchen", "kitchen", False),  # paths are anchored at the top
])
def test_under_follows_the_path(category: str, prefix: str, expected: bool) -> None:
    assert under(category, prefix) is expected


def test_in_category_needs_a_category_and_a_matching_prefix() -> None:
    assert in_category("kitchen.mugs", ["lighting", "kitchen"])
    assert not in_category("kitchenware", ["kitchen"])
    assert not in_category(None, ["kitchen"])
    assert not in_category("", [""])  # no category is in no category, not even the empty one
    assert not in_category("kitchen", [])


def test_relative_divides_by_the_strongest() -> None:
    assert relative({"a": 2.0, "b": 1.0, "c": 0.5}) == {"a": 1.0, "b": 0.5, "c": 0.25}
    assert relative({"a": 1e-9}) == {"a": 1.0}  # decay scales all alike: a faded profile is still ranked


@pytest.mark.parametrize("scores", [{}, {"a": 0.0}, {"a": 0.0, "b": 0.0}])
def test_relative_of_no_interest_is_empty(scores: dict[str, float]) -> None:
    assert relative(scores) == {}


def test_affinity_below_takes_the_best_of_the_prefix_and_its_children_only() -> None:
    affinity = {"kitchenware": 1.0, "kitchen.mugs": 0.2, "kitchen.baking": 0.6, "lighting": 0.9}
    assert affinity_below("kitchen", affinity) == 0.6
    assert affinity_below("kitchen.mugs", affinity) == 0.2
    assert affinity_below("kitchen.mugs.large", affinity) == 0.0  # a parent's interest is not a child's
    assert affinity_below("garden", affinity) == 0.0


def test_affinity_above_takes_the_best_of_the_category_and_its_parents_only() -> None:
    affinity = {"kitchen": 0.4, "kitchen.mugs.large": 1.0, "kitchenware": 0.9}
    assert affinity_above("kitchen.mugs", affinity) == 0.4  # a child's interest is not the parent's
    assert affinity_above("kitchen.mugs.large", affinity) == 1.0
    assert affinity_above("kitchen", affinity) == 0.4
    assert affinity_above(None, affinity) == 0.0
    assert affinity_above("", {"": 1.0}) == 0.0


def test_the_customers_affinities_speak_for_them_once_they_have_any() -> None:
    visitor = VisitorProfile(category_affinity={"kitchen": 1.0})
    with_scores = CustomerProfile(category_affinity={"lighting": 1.0})
    assert affinity_owner(visitor, with_scores) is with_scores
    assert affinity_owner(visitor, CustomerProfile()) is visitor  # a new customer has nothing to say yet
    assert affinity_owner(visitor, None) is visitor
