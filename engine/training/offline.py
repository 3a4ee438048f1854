"""The served for-you list computed offline from history rows: what `vitrine evaluate` and the
promotion gate of `vitrine train` score as "the served recommender".

Nothing here is an evaluation-only model. A person's rows are turned back into the events they
came from and folded into visitor and customer profiles with ``engine.profiles.apply_event`` (the
function the API and the stream workers apply, JSON round trip included, as Redis stores them);
the list is ``engine.ranking.scenarios.for_you`` with the production exclusions, on a ``ServedModel`` of
the artifact. Only Redis is missing: profiles live in a dict for the duration of the run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from engine.catalog import Catalogue
from engine.events.schema import Event, LineItem
from engine.ranking.model import ServedModel
from engine.catalog import ItemLookup
from engine.profiles.fold import apply_event
from engine.profiles.shapes import CustomerProfile, ProfileConfig, VisitorProfile
from engine.ranking.scenarios import Context, base_exclusions, for_you
from models.artifacts import Artifact
from models.evaluate import Query, Ranker
from models.rows import Interaction


def events_from(rows: Sequence[Interaction]) -> Iterator[Event]:
    """Rows back into events: the lines of one order (same basket, consecutive) are one purchase."""
    n = 0
    i = 0
    while i < len(rows):
        r = rows[i]
        j = i + 1
        if r.event_type == "purchase" and r.basket is not None:
            while j < len(rows) and rows[j].basket == r.basket and rows[j].event_type == "purchase":
                j += 1
        lines = tuple(LineItem.model_construct(item_id=x.item_id, quantity=x.quantity, price=None) for x in rows[i:j])
        n += 1
        yield Event.model_construct(
            event_id=f"offline-{n}", type=r.event_type, visitor_id=r.visitor_id, customer_id=r.customer_id,
            item_id=r.item_id if j == i + 1 else None, items=lines if r.event_type == "purchase" else None,
            quantity=r.quantity, price=None, revenue=None, ts=r.ts, rt=r.ts, properties={})
        i = j


def fold_profiles(rows: Sequence[Interaction], lookup: ItemLookup, cfg: ProfileConfig
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(visitor id -> stored profile, customer id -> stored profile) after these rows, in order.

    Rows are training rows, which leave out what consent did not allow (``engine.events.history``), and
    carry no consent events: opt-in (``consent_required``) would fold nothing from them."""
    cfg = replace(cfg, consent_required=False)
    visitors: dict[str, dict[str, Any]] = {}
    customers: dict[str, dict[str, Any]] = {}
    for event in events_from(rows):
        visitor_json = visitors.get(event.visitor_id)
        cid = event.customer_id or VisitorProfile.customer_of(visitor_json)  # as engine.ingest.apply picks it
        applied = apply_event(visitor_json, customers.get(cid) if cid else None, event, lookup, cfg)
        visitors[event.visitor_id] = applied.visitor.to_json()
        if applied.customer is not None and applied.customer_id:
            customers[applied.customer_id] = applied.customer.to_json()
    return visitors, customers


class OfflineRanker:
    """``serve`` for models.evaluate: an artifact in, the served for-you ranker out.

    Profiles depend on the rows, not on the model, so they are folded once per query and reused
    across the many artifacts a tuning run scores.
    """

    def __init__(self, catalogue: Catalogue, cfg: ProfileConfig, *, exclude_seen: bool,
                 exclude_purchased: bool) -> None:
        self.catalogue = catalogue
        self.cfg = cfg
        self.exclude_seen = exclude_seen
        self.exclude_purchased = exclude_purchased
        self._profiles: dict[tuple[str, float, int], tuple[VisitorProfile, CustomerProfile | None, str | None]] = {}
        self._served: ServedModel | None = None

    def profiles(self, q: Query) -> tuple[VisitorProfile, CustomerProfile | None, str | None]:
        """(visitor, customer, customer id) as ``engine.profiles.store.load_profiles`` would read them."""
        key = (q.person, q.now, len(q.history))
        if key not in self._profiles:
            visitors, customers = fold_profiles(q.history, self.catalogue.info, self.cfg)
            visitor = VisitorProfile.from_json(visitors.get(q.visitor_id))
            customer_id = q.customer_id or visitor.customer_id
            customer = CustomerProfile.from_json(customers[customer_id]) if customer_id in customers else None
            self._profiles[key] = (visitor, customer, customer_id)
        return self._profiles[key]

    def _model(self, artifact: Artifact) -> ServedModel:
        """A ``ServedModel`` of ``artifact``; the same artifact again (tuning changes only its recipe
        between calls) reuses what was derived from its arrays, with the recipe read anew."""
        if self._served is not None and self._served.artifact is artifact:
            model = copy.copy(self._served)
            model.read_recipe()
            return model
        self._served = ServedModel(artifact)
        return self._served

    def __call__(self, artifact: Artifact) -> Ranker:
        """The ranker of ``artifact``: with the exclusions its recipe chose, if it chose them (see
        ``engine.ranking.model.ServedModel.exclusions``), else this ranker's."""
        model = self._model(artifact)
        exclude_seen = self.exclude_seen if model.exclude_seen is None else model.exclude_seen
        exclude_purchased = self.exclude_purchased if model.exclude_purchased is None else model.exclude_purchased

        def rank(q: Query) -> list[str]:
            visitor, customer, customer_id = self.profiles(q)
            ctx = Context(visitor_id=q.visitor_id, customer_id=customer_id, visitor=visitor, customer=customer,
                          now=q.now, n=q.k, session_timeout_s=self.cfg.session_timeout_s,
                          exclude_purchased=exclude_purchased, exclude_seen=exclude_seen)
            ctx.excluded = base_exclusions(ctx)
            return [pick.item_id for pick in for_you(model, self.catalogue, ctx)]
        return rank
