"""Training rows leave out the people who withdrew consent, as their profiles do (pure)."""

from __future__ import annotations

from typing import Any

from engine.events.history import interactions

T0 = 1_700_000_000.0


def ev(event_id: str, type_: str, visitor: str, customer: str | None = None, **fields: Any) -> dict[str, Any]:
    event = {"event_id": event_id, "type": type_, "visitor_id": visitor, "ts": T0 + len(event_id), **fields}
    if customer:
        event["customer_id"] = customer
    return event


def view(event_id: str, visitor: str, item: str, customer: str | None = None) -> dict[str, Any]:
    return ev(event_id, "product_view", visitor, customer, item_id=item)


def consent(event_id: str, visitor: str, granted: bool, customer: str | None = None) -> dict[str, Any]:
    return ev(event_id, "consent", visitor, customer, properties={"granted": granted})


def trained(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row.visitor_id, row.item_id) for row in interactions(events)]


def test_events_before_the_last_withdrawal_are_dropped_and_after_a_grant_kept() -> None:
    assert trained([
        view("1", "v1", "a"), view("2", "other", "b"),
        consent("3", "v1", False),
        view("4", "v1", "c"),  # not profiled while withdrawn: not trained either
        consent("5", "v1", True), view("6", "v1", "d"),
        consent("7", "v1", False),  # withdrawn again: what came before goes, grant or not
        view("8", "v1", "e"), consent("9", "v1", True), view("10", "v1", "f"),
    ]) == [("other", "b"), ("v1", "f")]


def test_a_person_still_withdrawn_is_left_out_entirely() -> None:
    assert trained([view("1", "v1", "a"), consent("2", "v1", True), consent("3", "v1", False),
                    view("4", "v1", "b")]) == []


def test_a_withdrawal_covers_every_cookie_of_the_customer() -> None:
    events = [
        view("1", "laptop", "a"), ev("2", "login", "laptop", "alice"), view("3", "laptop", "b", "alice"),
        view("4", "phone", "c"), ev("5", "login", "phone", "alice"),  # the phone's anonymous view too
        view("6", "stranger", "d"),
        consent("7", "laptop", False),  # linked by the login: alice goes, on both cookies
        view("8", "phone", "e"),
    ]
    assert trained(events) == [("stranger", "d")]
    # a grant on the phone lifts alice (the phone trains again); the laptop's own choice stays
    assert trained([*events, consent("9", "phone", True), view("10", "phone", "f"), view("11", "laptop", "g")]) == [
        ("stranger", "d"), ("phone", "f")]


def test_a_withdrawal_naming_the_customer_covers_its_cookies() -> None:
    assert trained([view("1", "phone", "a", "alice"), consent("2", "kiosk", False, customer="alice"),
                    view("3", "tablet", "b")]) == [("tablet", "b")]


def test_a_retried_withdrawal_does_not_undo_a_grant_and_rows_stay_deduplicated() -> None:
    assert trained([view("1", "v1", "a"), consent("2", "v1", False), consent("3", "v1", True),
                    view("4", "v1", "b"), consent("2", "v1", False), view("4", "v1", "b")]) == [("v1", "b")]


def test_without_withdrawals_every_row_is_kept_in_order() -> None:
    events = [view("1", "v1", "a"), consent("2", "v1", True),
              ev("3", "purchase", "v2", items=[{"item_id": "x", "quantity": 2}, {"item_id": "y"}])]
    assert trained(events) == [("v1", "a"), ("v2", "x"), ("v2", "y")]


def trained_opt_in(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(row.visitor_id, row.item_id) for row in interactions(events, consent_required=True)]


def test_opt_in_keeps_a_persons_rows_only_from_their_grant() -> None:
    assert trained_opt_in([
        view("1", "v1", "a"), view("2", "never", "b"),
        consent("3", "v1", True), view("4", "v1", "c"),
        consent("5", "v1", False), view("6", "v1", "d"),  # a withdrawal still removes everything before it
        consent("7", "v1", True), view("8", "v1", "e"),
    ]) == [("v1", "e")]
    assert trained_opt_in([view("1", "v1", "a")]) == []


def test_opt_in_a_customers_grant_covers_their_cookies_from_then_on() -> None:
    assert trained_opt_in([
        view("1", "laptop", "a", "alice"), consent("2", "laptop", True, customer="alice"),
        view("3", "laptop", "b"), view("4", "phone", "c", "alice"), view("5", "stranger", "d"),
    ]) == [("laptop", "b"), ("phone", "c")]


def test_an_event_sent_with_gpc_is_a_withdrawal_whatever_it_says() -> None:
    events = [view("1", "v1", "a"), view("2", "other", "b"),
              {**view("3", "v1", "c"), "gpc": True},
              {**consent("4", "v1", True), "gpc": True},  # never a grant
              view("5", "v1", "d")]
    assert trained(events) == [("other", "b")]
    assert trained([*events, consent("6", "v1", True), view("7", "v1", "e")]) == [("other", "b"), ("v1", "e")]


def test_the_kafka_topic_read_partition_by_partition_gives_the_same_rows() -> None:
    """Cookie A's partition is read before cookie B's, whose view came before A's withdrawal:
    the view is forgotten as it is in the profiles."""
    def at(event: dict[str, Any], seconds: float) -> dict[str, Any]:
        return {**event, "ts": T0 + seconds, "rt": T0 + seconds}

    partition_a = [at(ev("1", "login", "A", "X"), 100), at(consent("2", "A", False), 200),
                   at(consent("3", "A", True), 300)]
    partition_b = [at(ev("4", "login", "B", "X"), 50), at(view("5", "B", "secret"), 60)]
    assert trained(partition_a + partition_b) == trained(partition_b + partition_a) == []
