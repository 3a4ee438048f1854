"""Two customer profiles of one person as one, purely (``engine.customers.merge`` stores it).

Counts add up (each order was counted on exactly one of the two), times take their min or max,
affinities are brought to the same clock before they add, traits keep the survivor's value on a
conflict, and consent keeps the most restrictive choice made: a withdrawal on either record wins,
then a grant; a channel is granted only if every record that chose granted it.
"""

from __future__ import annotations

from engine.profiles.fold import bump_count, decay, merge_scores
from engine.profiles.shapes import AFFINITIES, BRANDS, CUSTOMER_PURCHASES, CUSTOMER_RECENT, CUSTOMER_VISITORS, \
    WATCHING, CustomerProfile


def _first(a: float, b: float) -> float:
    """The earlier of two times, 0 meaning never."""
    return min(a, b) if a and b else a or b


def consent(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return True if a or b else None


def channels(a: dict[str, bool], b: dict[str, bool]) -> dict[str, bool]:
    return {k: a.get(k, True) and b.get(k, True) for k in {**a, **b}}


def combine(a: CustomerProfile, b: CustomerProfile, half_life_s: float) -> CustomerProfile:
    """``a`` survives: its traits win, its cookies and recent items come first on a tie."""
    last_seen = max(a.last_seen, b.last_seen)
    affinities = []
    for mine, theirs, cap in ((a.category_affinity, b.category_affinity, AFFINITIES),
                              (a.brand_affinity, b.brand_affinity, BRANDS)):
        out, other = dict(mine), dict(theirs)
        decay(out, last_seen - a.last_seen, half_life_s)
        decay(other, last_seen - b.last_seen, half_life_s)
        merge_scores(out, other, cap)
        affinities.append({k: round(v, 3) for k, v in out.items()})
    purchases = dict(a.purchases)
    for item, qty in b.purchases.items():
        bump_count(purchases, item, qty, CUSTOMER_PURCHASES)
    newer, older = (b, a) if b.last_seen > a.last_seen else (a, b)
    merged = CustomerProfile(
        first_seen=_first(a.first_seen, b.first_seen), last_seen=last_seen,
        orders=a.orders + b.orders, revenue=round(a.revenue + b.revenue, 2),
        first_order=_first(a.first_order, b.first_order), last_order=max(a.last_order, b.last_order),
        purchases=purchases,
        recent_items=list(dict.fromkeys([*newer.recent_items, *older.recent_items]))[:CUSTOMER_RECENT],
        watching=list(dict.fromkeys([*newer.watching, *older.watching]))[:WATCHING],
        category_affinity=affinities[0], brand_affinity=affinities[1],
        visitors=list(dict.fromkeys([*a.visitors, *b.visitors]))[:CUSTOMER_VISITORS],
        traits={**b.traits, **a.traits},
        consent=consent(a.consent, b.consent),
        # More withdrawals than either record had: the cookies of the record that had fewer read as
        # forgotten (engine.profiles.consent.stale), as a withdrawal on one device forgets the others.
        withdrawals=a.withdrawals + b.withdrawals,
        withdrawn_at=max(a.withdrawn_at, b.withdrawn_at),
        channels=channels(a.channels, b.channels),
    )
    if merged.consent is False:  # what a withdrawal keeps (engine.profiles.fold): the choice, not behaviour
        return CustomerProfile(last_seen=last_seen, visitors=merged.visitors, consent=False,
                               withdrawals=merged.withdrawals, withdrawn_at=merged.withdrawn_at,
                               channels=merged.channels)
    return merged
