"""Two customer profiles of one person as one (pure): counts add once, times take min/max,
traits keep the survivor's, consent keeps the most restrictive choice."""

from __future__ import annotations

from engine.customers.combine import channels, combine, consent
from engine.profiles.shapes import CustomerProfile

DAY = 86400.0


def test_counts_add_and_times_span_both() -> None:
    a = CustomerProfile(first_seen=100 * DAY, last_seen=200 * DAY, orders=2, revenue=30.5, first_order=110 * DAY,
                        last_order=190 * DAY, purchases={"x": 1, "y": 2}, visitors=["va"], traits={"tier": "gold"},
                        category_affinity={"c.a": 1.0}, recent_items=["x"])
    b = CustomerProfile(first_seen=50 * DAY, last_seen=300 * DAY, orders=1, revenue=9.5, first_order=60 * DAY,
                        last_order=60 * DAY, purchases={"y": 1, "z": 4}, visitors=["vb", "va"],
                        traits={"tier": "silver", "first_name": "Al"}, category_affinity={"c.a": 1.0, "c.b": 2.0},
                        recent_items=["z", "x"])
    m = combine(a, b, half_life_s=100 * DAY)
    assert (m.orders, m.revenue) == (3, 40.0)
    assert (m.first_seen, m.last_seen, m.first_order, m.last_order) == (50 * DAY, 300 * DAY, 60 * DAY, 190 * DAY)
    assert m.purchases == {"x": 1, "y": 3, "z": 4}
    assert m.visitors == ["va", "vb"]  # each cookie once
    assert m.traits == {"tier": "gold", "first_name": "Al"}  # the survivor wins a conflict
    assert m.recent_items == ["z", "x"]  # the more recent record's first
    assert m.category_affinity == {"c.a": 1.5, "c.b": 2.0}  # a's score decayed 100 days to b's clock


def test_merging_with_an_empty_record_changes_nothing_it_counts() -> None:
    a = CustomerProfile(first_seen=10.0, last_seen=20.0, orders=1, revenue=5.0, first_order=15.0, last_order=15.0)
    m = combine(a, CustomerProfile(), half_life_s=DAY)
    assert (m.first_seen, m.orders, m.revenue, m.first_order, m.last_order) == (10.0, 1, 5.0, 15.0, 15.0)


def test_the_most_restrictive_consent_wins() -> None:
    assert consent(True, False) is False and consent(None, False) is False and consent(False, True) is False
    assert consent(True, None) is True and consent(None, None) is None
    assert channels({"email": True, "push": True}, {"email": False}) == {"email": False, "push": True}
    a = CustomerProfile(last_seen=5.0, orders=3, revenue=9.0, consent=True, visitors=["va"], channels={"email": True})
    b = CustomerProfile(last_seen=4.0, consent=False, withdrawals=1, withdrawn_at=4.0, visitors=["vb"])
    m = combine(a, b, half_life_s=DAY)
    # A withdrawal on either record: the person withdrew; what it keeps is the choice, not behaviour.
    assert m.consent is False and m.orders == 0 and m.revenue == 0.0
    assert m.withdrawals == 1 and m.withdrawn_at == 4.0 and m.visitors == ["va", "vb"]
    assert m.channels == {"email": True}
