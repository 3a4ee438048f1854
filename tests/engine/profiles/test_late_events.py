"""A late event (sent or replayed after later ones) is filed with the visit its timestamp belongs
to, and moves first_seen back when it is earlier (pure fold, engine.profiles)."""

from __future__ import annotations

import pytest

from engine.profiles.visits import history_items, visit_items
from tests.engine.profiles.test_fold import T0, ev, fold

DAY = 86400.0


def test_an_event_of_three_days_ago_goes_to_the_earlier_visits_not_the_current_one() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1"), ev("product_view", T0 + 60, item_id="mug2"),
                 ev("product_view", T0 - 3 * DAY, item_id="lamp")])
    assert v.session_items == ["mug2", "mug1"]
    assert v.last_visit_items == ["lamp"]
    assert v.first_seen == T0 - 3 * DAY and v.visits == 2
    assert v.last_seen == T0 + 60 and v.session_start == T0
    current, earlier = visit_items(v, T0 + 120, 1800)
    assert current == ["mug2", "mug1"] and earlier == ["lamp"]
    weights = {item: w for item, w, _ in history_items(v, None, T0 + 120, 1800)}
    assert weights["lamp"] < weights["mug1"]  # an earlier visit's item weighs less than this visit's


def test_a_late_item_goes_after_the_last_visits_own_items() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1"), ev("product_view", T0 + 2 * 3600, item_id="mug2"),
                 ev("product_view", T0 - DAY, item_id="lamp")])
    assert v.session_items == ["mug2"] and v.last_visit_items == ["mug1", "lamp"]


def test_a_late_event_within_the_timeout_of_the_visits_start_belongs_to_it() -> None:
    v, _ = fold([ev("product_view", T0, item_id="mug1"), ev("product_view", T0 - 600, item_id="lamp")])
    assert set(v.session_items) == {"mug1", "lamp"} and v.last_visit_items == []
    assert v.session_start == T0 - 600 and v.first_seen == T0 - 600 and v.visits == 1


def test_a_late_event_between_known_visits_moves_nothing_back_but_is_not_in_the_current_visit() -> None:
    v, _ = fold([ev("product_view", T0 - 2 * DAY, item_id="mug1"), ev("product_view", T0, item_id="mug2"),
                 ev("product_view", T0 - DAY, item_id="lamp")])
    assert v.first_seen == T0 - 2 * DAY and v.visits == 2
    assert v.session_items == ["mug2"] and "lamp" in v.last_visit_items


def test_a_late_events_affinity_is_decayed_by_its_age() -> None:
    fresh, _ = fold([ev("product_view", T0, item_id="mug2"), ev("product_view", T0 + 1, item_id="lamp")])
    late, _ = fold([ev("product_view", T0, item_id="mug2"), ev("product_view", T0 + 1 - DAY, item_id="lamp")])
    # CFG's half-life is a day: the view of a day ago adds half of what a view now adds
    assert late.category_affinity["lighting.lights"] == pytest.approx(
        fresh.category_affinity["lighting.lights"] / 2, abs=2e-3)


def test_a_customers_first_seen_moves_back_too() -> None:
    _, c = fold([ev("product_view", T0, item_id="mug1", customer_id="c1"),
                 ev("product_view", T0 - 3 * DAY, item_id="lamp", customer_id="c1")])
    assert c is not None and c.first_seen == T0 - 3 * DAY
    assert c.recent_items == ["mug1", "lamp"]
