"""Segments: named sets of people, defined as data in the rules file (``segments:``) and evaluated
from a profile on read, so membership is always current and nothing is stored or batch-computed.

The built-in segments (``DEFAULTS``) are written in the same language a merchandiser uses; a rules
file's segment of the same name replaces one. ``members`` is the one evaluation, pure: blocks,
placement boosts, caps, experiments, the customer view, the admin counts and triggers all ask it.
Scores (churn risk, expected revenue) are computed only when a definition asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol

from engine.merch.schema import Range, Segment
from engine.profiles import consent
from engine.profiles.affinity import affinity_below, affinity_owner, in_category, relative
from engine.profiles.shapes import CustomerProfile, VisitorProfile

DAY = 86400.0
HOUR = 3600.0
Source = Literal["default", "rules"]

# Today's segments as definitions: a shop that defines none gets exactly these.
DEFAULTS: dict[str, Segment] = {name: Segment.model_validate(rule) for name, rule in {
    "new": {"description": "First visit", "visits": {"max": 1}},
    "returning": {"description": "Came back at least once", "visits": {"min": 2}},
    "loyal": {"description": "3 orders or more", "orders": {"min": 3}},
    "high_value": {"description": "500 or more spent", "revenue": {"min": 500}},
    "cart_abandoner": {"description": "Cart untouched for more than an hour", "cart": "not_empty",
                       "cart_age_hours": {"above": 1}},
    "at_risk": {"description": "No order for more than 90 days", "orders": {"min": 1},
                "days_since_last_order": {"above": 90}},
}.items()}


class ScoreFacts(Protocol):
    """What segments read of a customer's scores (``engine.customers.scores.Scores``)."""

    churn_risk: str
    expected_revenue: float


Scorer = Callable[[CustomerProfile, float], "ScoreFacts | None"]
Declared = tuple[Sequence[str], Sequence[str]]  # declared favourite categories and brands (engine.profiles.preferences)


class Bounds:
    """A ``Range`` as plain numbers: evaluated for every person on every read, where a model's
    attribute access costs more than the comparison."""

    __slots__ = ("low", "high", "low_open", "high_open")

    def __init__(self, r: Range) -> None:
        self.low, self.low_open = (r.above, True) if r.above is not None else (r.min, False)
        self.high, self.high_open = (r.below, True) if r.below is not None else (r.max, False)

    def holds(self, value: float, unit: float = 1.0) -> bool:
        low, high = self.low, self.high
        if low is not None and (value <= low * unit if self.low_open else value < low * unit):
            return False
        return high is None or (value < high * unit if self.high_open else value <= high * unit)


_UNSET: Any = object()


class Facts:
    """One person at one moment, as the conditions read them; what costs more than an addition
    is computed on first use, once."""

    __slots__ = ("visitor", "customer", "now", "declared", "orders", "revenue", "_scorer", "_scores", "_affinity",
                 "_contact")

    def __init__(self, visitor: VisitorProfile, customer: CustomerProfile | None, now: float,
                 scorer: Scorer | None, declared: Declared = ((), ())) -> None:
        self.visitor, self.customer, self.now, self._scorer = visitor, customer, now, scorer
        self.declared = declared
        self.orders = visitor.orders + (customer.orders if customer else 0)
        self.revenue = visitor.revenue + (customer.revenue if customer else 0.0)
        self._scores = self._affinity = self._contact = _UNSET

    @property
    def scores(self) -> ScoreFacts | None:
        if self._scores is _UNSET:
            c = self.customer
            self._scores = None if self._scorer is None or c is None else self._scorer(c, self.now)
        return self._scores  # type: ignore[no-any-return]

    @property
    def affinity(self) -> tuple[dict[str, float], dict[str, float]]:
        if self._affinity is _UNSET:
            owner = affinity_owner(self.visitor, self.customer)
            self._affinity = (relative(owner.category_affinity), relative(owner.brand_affinity))
        return self._affinity  # type: ignore[no-any-return]

    @property
    def contact(self) -> dict[str, str]:
        if self._contact is _UNSET:
            self._contact = consent.state(self.visitor, self.customer, False)
        return self._contact  # type: ignore[no-any-return]


def _since(ts: float, rule: Bounds, now: float, unit: float) -> bool:
    return bool(ts) and rule.holds(now - ts, unit)


def _last_visit(f: Facts) -> float:
    return max(f.visitor.last_seen, f.customer.last_seen if f.customer else 0.0)


# One check per condition of ``Segment``, each (condition value, facts) -> holds. A new condition
# is a schema field plus a line here; tests/engine/merch/test_segments.py checks that none is missing.
CHECKS: dict[str, Callable[[Any, Facts], bool]] = {
    "visits": lambda r, f: r.holds(f.visitor.visits),
    "orders": lambda r, f: r.holds(f.orders),
    "revenue": lambda r, f: r.holds(f.revenue),
    "days_since_last_order": lambda r, f: f.customer is not None and _since(f.customer.last_order, r, f.now, DAY),
    "days_since_last_visit": lambda r, f: _since(_last_visit(f), r, f.now, DAY),
    "expected_revenue": lambda r, f: f.scores is not None and r.holds(f.scores.expected_revenue),
    "churn_risk": lambda bands, f: f.scores is not None and f.scores.churn_risk in bands,
    "category_affinity": lambda want, f: all(affinity_below(cat, f.affinity[0]) >= t for cat, t in want.items()),
    "brand_affinity": lambda want, f: all(f.affinity[1].get(brand, 0.0) >= t for brand, t in want.items()),
    "cart": lambda state, f: (state == "not_empty") == bool(f.visitor.cart),
    "cart_age_hours": lambda r, f: bool(f.visitor.cart) and _since(f.visitor.cart_updated, r, f.now, HOUR),
    "consent": lambda want, f: consent.granted(f.visitor, f.customer) == want,
    "email_opt_in": lambda want, f: (f.contact["email"] == "granted") == want,
    "push_opt_in": lambda want, f: (f.contact["push"] == "granted") == want,
    "logged_in": lambda want, f: (f.customer is not None or f.visitor.customer_id is not None) == want,
    "customer_tier": lambda tiers, f: f.customer is not None and f.customer.traits.get("tier") in tiers,
    "prefers_category": lambda cats, f: any(in_category(c, cats) for c in f.declared[0]),
    "prefers_brand": lambda brands, f: any(b in brands for b in f.declared[1]),
}
SCORE_CONDITIONS = ("expected_revenue", "churn_risk")
DECLARED_CONDITIONS = ("prefers_category", "prefers_brand")
MEMBERSHIP = ("all_of", "any_of", "none_of")


@dataclass(frozen=True)
class Plan:
    """A definition as its checks, looked up once per rules version rather than per person."""

    checks: tuple[tuple[Callable[[Any, Facts], bool], Any], ...]
    all_of: tuple[str, ...] | None
    any_of: tuple[str, ...] | None
    none_of: tuple[str, ...] | None
    refers: bool = False

    @classmethod
    def of(cls, rule: Segment) -> "Plan":
        values = ((name, getattr(rule, name)) for name in CHECKS)
        checks = tuple((CHECKS[name], Bounds(v) if isinstance(v, Range) else v) for name, v in values if v is not None)
        refs = [tuple(r) if r is not None else None for r in (rule.all_of, rule.any_of, rule.none_of)]
        return cls(checks, *refs, refers=any(r is not None for r in refs))

    def refs_hold(self, members: Mapping[str, bool]) -> bool:
        """``members`` has the segments this one refers to, already decided."""
        return ((self.all_of is None or all(members[s] for s in self.all_of))
                and (self.any_of is None or any(members[s] for s in self.any_of))
                and (self.none_of is None or not any(members[s] for s in self.none_of)))


class SegmentCycle(ValueError):
    def __init__(self, path: list[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = path


def evaluation_order(rules: Mapping[str, Segment]) -> list[str]:
    """Each segment after the ones it refers to; ``SegmentCycle`` names a loop (the loader reports
    it with its line). References to unknown names are the loader's to report: skipped here."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise SegmentCycle([*trail[trail.index(name):], name])
        state[name] = 1
        for ref in rules[name].references:
            if ref in rules:
                visit(ref, [*trail, name])
        state[name] = 2
        order.append(name)

    for name in rules:
        visit(name, [])
    return order


@dataclass(frozen=True)
class SegmentSet:
    """The segments in force: the built-in ones, replaced or extended by the rules file's."""

    rules: Mapping[str, Segment]
    sources: Mapping[str, Source]
    plans: tuple[tuple[str, Plan], ...]  # in evaluation order

    @classmethod
    def of(cls, defined: Mapping[str, Segment]) -> "SegmentSet":
        rules = {**DEFAULTS, **defined}  # a redefined default keeps its place in the listing
        sources: dict[str, Source] = {n: "rules" if n in defined else "default" for n in rules}
        return cls(rules, sources, tuple((n, Plan.of(rules[n])) for n in evaluation_order(rules)))

    @cached_property
    def needs_scores(self) -> bool:
        return any(getattr(r, c) is not None for r in self.rules.values() for c in SCORE_CONDITIONS)

    @cached_property
    def needs_declared(self) -> bool:
        """Whether a segment reads declared preferences (then the request reads them too)."""
        return any(getattr(r, c) is not None for r in self.rules.values() for c in DECLARED_CONDITIONS)


DEFAULT_SET = SegmentSet.of({})


def members(segments: SegmentSet, visitor: VisitorProfile, customer: CustomerProfile | None, now: float,
            scorer: Scorer | None = None, declared: Declared = ((), ())) -> list[str]:
    """The segments this person is in now, in listing order (built-in first, then the file's).
    ``scorer`` gives the customer's scores; it is called at most once, and only if a segment
    asks for churn risk or expected revenue. ``declared``: what the person declared, as far as
    it may be used (``engine.profiles.preferences.interests_of``)."""
    facts = Facts(visitor, customer, now, scorer, declared)
    decided: dict[str, bool] = {}
    for name, plan in segments.plans:  # the request path's loop: plain code, no call per segment
        ok = True
        for check, value in plan.checks:
            if not check(value, facts):
                ok = False
                break
        decided[name] = ok and (not plan.refers or plan.refs_hold(decided))
    return [name for name in segments.rules if decided[name]]
