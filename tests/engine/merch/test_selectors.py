"""engine.merch.selectors: one predicate for every rule that names items, and its precomputed form.
Each condition alone is exercised through the rules stage (tests/engine/merch/test_stage.py); here are
the edges: boundaries, items without the field, unknown items, and what ItemSet precomputes."""

from __future__ import annotations

from typing import Any

import pytest

from engine.catalog import Item
from engine.merch.schema import Selector
from engine.merch.selectors import ItemSet, item_set, matches

NOW = 1_790_000_000.0
DAY = 86400.0


def sel(**fields: Any) -> Selector:
    return Selector.model_validate(fields)


def item(item_id: str = "i", **fields: Any) -> Item:
    return Item(item_id=item_id, **fields)


@pytest.mark.parametrize("category, prefixes, expected", [
    ("kitchen", ["kitchen"], True),
    ("kitchen.mugs.large", ["kitchen"], True),
    ("kitchenware", ["kitchen"], False),
    ("kitchen", ["kitchen.mugs"], False),  # the parent is not in the child's category
    ("kitchen.mugs", ["KITCHEN "], True),  # the rules file's categories are normalised like the catalogue's
    (None, ["kitchen"], False),
])
def test_category_in_matches_by_path(category: str | None, prefixes: list[str], expected: bool) -> None:
    assert matches(sel(category_in=prefixes), item(category=category), NOW) is expected


@pytest.mark.parametrize("category, expected", [("kitchenware", True), ("kitchen.mugs", False), (None, True)])
def test_category_not_in_excludes_by_path_and_keeps_items_without_a_category(category: str | None,
                                                                             expected: bool) -> None:
    assert matches(sel(category_not_in=["kitchen"]), item(category=category), NOW) is expected


def test_brands_compare_exactly_and_an_item_without_a_brand_is_in_no_brand() -> None:
    assert not matches(sel(brand_in=["acme"]), item(brand="Acme"), NOW)
    assert not matches(sel(brand_in=["acme"]), item(), NOW)
    assert matches(sel(brand_not_in=["acme"]), item(), NOW)


@pytest.mark.parametrize("price, expected", [(4.99, False), (5.0, True), (12.0, True), (12.01, False), (None, False)])
def test_price_bounds_are_inclusive_and_an_unpriced_item_is_outside_any_range(price: float | None,
                                                                              expected: bool) -> None:
    assert matches(sel(price={"min": 5, "max": 12}), item(price=price), NOW) is expected


def test_an_open_price_range_still_asks_for_a_price() -> None:
    assert matches(sel(price={"min": 0}), item(price=0.0), NOW)
    assert not matches(sel(price={"max": 100}), item(), NOW)


def test_in_stock_false_selects_the_items_out_of_stock() -> None:
    assert matches(sel(in_stock=False), item(in_stock=False), NOW)
    assert not matches(sel(in_stock=False), item(), NOW)


@pytest.mark.parametrize("value, wanted, expected", [
    (1, True, False),  # 1 is not true, either way round
    (True, 1, False),
    (0, False, False),
    (False, False, True),
    (1, 1.0, True),  # numbers compare as numbers
    ("red", ["blue", "red"], True),
    (None, "red", False),
])
def test_attributes_compare_without_bool_int_confusion(value: Any, wanted: Any, expected: bool) -> None:
    assert matches(sel(attributes={"a": wanted}), item(attributes={"a": value}), NOW) is expected


def test_a_missing_attribute_matches_no_wanted_value() -> None:
    assert not matches(sel(attributes={"colour": "red"}), item(attributes={"size": "red"}), NOW)


@pytest.mark.parametrize("added_at, expected", [
    (NOW - 7 * DAY, True),  # exactly at the edge of the window: still new
    (NOW - 7 * DAY - 1, False),
    (NOW + DAY, True),  # announced ahead
    (None, False),  # no date: never new
])
def test_new_arrivals_window_edge(added_at: float | None, expected: bool) -> None:
    assert matches(sel(new_arrivals="7d"), item(added_at=added_at), NOW) is expected


def test_an_unknown_item_matches_only_selectors_that_need_nothing_from_the_catalogue() -> None:
    assert matches(sel(), None, NOW)
    assert matches(sel(category_not_in=["kitchen"], brand_not_in=["acme"]), None, NOW)
    for needs_the_item in (sel(category_in=["kitchen"]), sel(brand_in=["acme"]), sel(price={"max": 5}),
                           sel(in_stock=True), sel(attributes={"a": 1}), sel(new_arrivals="1d"), sel(items=["x"])):
        assert not matches(needs_the_item, None, NOW), needs_the_item


def test_named_items_and_other_conditions_all_hold() -> None:
    s = sel(items=["a", "b"], in_stock=True)
    assert matches(s, item("a"), NOW)
    assert not matches(s, item("a", in_stock=False), NOW)
    assert not matches(s, item("c"), NOW)


# ------------------------------------------------------------------ ItemSet

ITEMS = {
    "m1": item("m1", category="kitchen.mugs", added_at=NOW - 100 * DAY),
    "m2": item("m2", category="kitchen.mugs", added_at=NOW - 6 * DAY),
    "k1": item("k1", category="kitchenware", added_at=NOW - 1 * DAY),
    "l1": item("l1", category="lighting", in_stock=False),
}
MODEL_IDS = ["m1", "m2", "k1", "l1", "gone"]  # "gone": known to the model, no longer in the catalogue
INDEX = {item_id: i for i, item_id in enumerate(MODEL_IDS)}


def test_item_set_agrees_with_matches_for_every_item() -> None:
    selectors = [sel(category_in=["kitchen"]), sel(new_arrivals="7d")]
    s = item_set(selectors, MODEL_IDS, INDEX, ITEMS, NOW)
    for item_id in MODEL_IDS:
        expected = all(matches(x, ITEMS.get(item_id), NOW) for x in selectors)
        assert s.contains(item_id, ITEMS.get(item_id), NOW) is expected, item_id
    assert [i for i in MODEL_IDS if s.contains(i, ITEMS.get(i), NOW)] == ["m2"]


def test_time_dependent_conditions_are_checked_at_request_time() -> None:
    s = item_set([sel(category_in=["kitchen"], new_arrivals="7d")], MODEL_IDS, INDEX, ITEMS, NOW)
    assert s.contains("m2", ITEMS["m2"], NOW)
    assert not s.contains("m2", ITEMS["m2"], NOW + 2 * DAY)  # no longer new two days later


def test_static_conditions_are_answered_from_the_precomputed_table_for_the_models_items() -> None:
    s = item_set([sel(in_stock=True)], MODEL_IDS, INDEX, ITEMS, NOW)
    # The table is per catalogue version: a request never re-evaluates a known item's static answer.
    assert not s.contains("l1", item("l1", category="lighting"), NOW)


def test_items_the_model_does_not_know_are_checked_one_by_one() -> None:
    s = item_set([sel(category_in=["kitchen"])], MODEL_IDS, INDEX, ITEMS, NOW)
    assert s.contains("new", item("new", category="kitchen.pans"), NOW)
    assert not s.contains("new2", item("new2", category="kitchenware"), NOW)
    assert not s.contains("gone", None, NOW)  # a category filter leaves out what the catalogue lost


def test_no_selectors_contain_everything_and_an_unprecomputed_set_still_answers() -> None:
    assert all(item_set([], MODEL_IDS, INDEX, ITEMS, NOW).contains(i, ITEMS.get(i), NOW) for i in MODEL_IDS)
    plain = ItemSet((sel(category_in=["lighting"]),))
    assert plain.contains("l1", ITEMS["l1"], NOW) and not plain.contains("m1", ITEMS["m1"], NOW)
