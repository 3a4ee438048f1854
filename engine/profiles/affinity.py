"""Category paths and affinities, meant the same way by every rule that uses them.

Categories are dotted paths, most general first: ``kitchen`` covers ``kitchen.mugs`` (not
``kitchenware``). Affinity scores decay with time, and decay scales all of a profile's scores
alike, so rules compare them relative to the person's strongest (0..1). A known customer's
affinities (all their devices) speak for them; an anonymous visitor has only the cookie's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.profiles.shapes import CustomerProfile, VisitorProfile


def lineage(category: str) -> tuple[str, ...]:
    """``kitchen.mugs`` -> (``kitchen``, ``kitchen.mugs``): a category and its parents."""
    parts = category.split(".")
    return tuple(".".join(parts[:depth]) for depth in range(1, len(parts) + 1))


def under(category: str, prefix: str) -> bool:
    """``category`` is ``prefix`` or below it."""
    return category == prefix or category.startswith(prefix + ".")


def in_category(category: str | None, prefixes: Iterable[str]) -> bool:
    return bool(category) and any(under(category, p) for p in prefixes)  # type: ignore[arg-type]


def relative(scores: Mapping[str, float]) -> dict[str, float]:
    """Each score over the strongest one."""
    top = max(scores.values(), default=0.0)
    return {k: v / top for k, v in scores.items()} if top > 0 else {}


def affinity_below(prefix: str, affinity: Mapping[str, float]) -> float:
    """The best affinity to ``prefix`` or anything below it (a block's "likes kitchen")."""
    return max((v for k, v in affinity.items() if under(k, prefix)), default=0.0)


def affinity_above(category: str | None, affinity: Mapping[str, float]) -> float:
    """The best affinity to ``category`` or one of its parents (how much an item fits)."""
    if not category:
        return 0.0
    return max((v for k, v in affinity.items() if under(category, k)), default=0.0)


def affinity_owner(visitor: VisitorProfile, customer: CustomerProfile | None) -> VisitorProfile | CustomerProfile:
    """Whose affinities describe the person: the customer's once they have any, else the cookie's."""
    return customer if customer is not None and customer.category_affinity else visitor
