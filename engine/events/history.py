"""The durable event history as training rows for models/.

A person who withdrew consent is left out, as the profiles forget them (``engine.profiles``): their
events up to their last withdrawal, and those after it until they grant consent again. "Them" is the
cookie that withdrew and the customer it named or was linked to, with every cookie of that customer.
A withdrawal also removes what came before it, so the rows are held until the history is read
(training sorts them all anyway) and filtered then: one pass, for the log and the Kafka topic alike.
An event sent with Global Privacy Control (``gpc``) is a withdrawal. Where consent is required
(opt-in), a person's rows count only from a grant on: on the cookie or its customer, as the
profiles fold them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.events.log import read_raw
from engine.events.schema import profiling_choice
from models.rows import Interaction, user_key

TRAINABLE = frozenset({"product_view", "add_to_cart", "add_to_wishlist", "purchase", "recommendation_click"})


class Consent:
    """Who withdrew, seen in history order: for each person ("v:<visitor>", "c:<customer>") who ever
    withdrew (or, when consent is ``required``, ever granted it), the index of their first row kept
    (None while withdrawn)."""

    def __init__(self, required: bool = False) -> None:
        self.required = required
        self.kept_from: dict[str, int | None] = {}
        self.linked: dict[str, str] = {}  # visitor -> the customer it belongs to by now
        self.customers: defaultdict[str, set[str]] = defaultdict(set)  # visitor -> every customer it was
        self._seen: set[str] = set()  # consent event ids: a retried one must not count again

    def see(self, event: dict[str, Any], rows: int) -> None:
        """Note the event; ``rows``: how many rows the history gave before it."""
        visitor, customer = event["visitor_id"], event.get("customer_id")
        if customer:
            self.linked[visitor] = customer
            self.customers[visitor].add(customer)
        granted = profiling_choice(event.get("type"), event.get("properties"), event.get("gpc") is True)
        if granted is None or event["event_id"] in self._seen:
            return
        self._seen.add(event["event_id"])
        people = [user_key(visitor, None)] + ([user_key(visitor, c)] if (c := customer or self.linked.get(visitor)) else [])
        for person in people:
            if not granted:
                self.kept_from[person] = None
            elif self.kept_from.get(person, 0) is None or (self.required and person not in self.kept_from):
                self.kept_from[person] = rows  # back from a withdrawal, or a first grant (opt-in)

    def keeps(self, index: int, row: Interaction) -> bool:
        """Whether row number ``index`` may be trained on: after every concerned person's return
        and, when consent is required, after a grant by one of them."""
        people = [user_key(row.visitor_id, None), *(user_key(row.visitor_id, c) for c in self.customers.get(row.visitor_id, ()))]
        if row.customer_id:
            people.append(user_key(row.visitor_id, row.customer_id))
        granted = not self.required
        for person in people:
            if person in self.kept_from:
                start = self.kept_from[person]
                if start is None or index < start:
                    return False
                granted = True
        return granted


def interactions(events: Iterable[dict[str, Any]], consent_required: bool = False,
                 since: float | None = None, catalogue: Container[str] | None = None) -> Iterator[Interaction]:
    """Each logged event once (the log may hold a retried event twice), one row per item, without
    the people who withdrew consent (or, when it is required, had not granted it yet). ``since``:
    only events accepted from then on (the training window) give rows; consent is read from all.
    Given the ``catalogue``'s item ids, without the items it does not have: made-up ids in events
    must not enter what the models learn from (co-occurrence neighbours, bought-together,
    popularity)."""
    seen: set[str] = set()
    rows: list[Interaction] = []
    consent = Consent(consent_required)
    # Who had withdrawn when depends on the order across cookies: the log comes merged by
    # acceptance time already, the Kafka topic partition by partition (timsort is linear on the former).
    for e in sorted(events, key=lambda e: e.get("rt") or e["ts"]):
        consent.see(e, len(rows))
        if e.get("type") not in TRAINABLE or e["event_id"] in seen:
            continue
        if since is not None and (e.get("rt") or e["ts"]) < since:
            continue
        seen.add(e["event_id"])
        basket = e["event_id"] if e["type"] == "purchase" else None
        lines = e.get("items") or [{"item_id": e.get("item_id"), "quantity": e.get("quantity") or 1}]
        for line in lines:
            if line.get("item_id") and (catalogue is None or line["item_id"] in catalogue):
                rows.append(Interaction(e["ts"], e["visitor_id"], e.get("customer_id"), e["type"],
                                        line["item_id"], int(line.get("quantity") or 1), basket))
    if not consent.kept_from and not consent_required:
        yield from rows
        return
    yield from (row for index, row in enumerate(rows) if consent.keeps(index, row))


def interactions_from_log(log_dir: Path, consent_required: bool = False,
                          since: float | None = None,
                          catalogue: Container[str] | None = None) -> Iterator[Interaction]:
    return interactions(read_raw(log_dir), consent_required, since, catalogue)
