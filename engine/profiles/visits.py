"""What a person has looked at, read from their profiles: the visit under way, earlier visits, and
the weighted history the recommendation scenarios start from."""

from __future__ import annotations

from collections.abc import Iterable

from engine.profiles.shapes import CustomerProfile, VisitorProfile


def visit_items(v: VisitorProfile, now: float, timeout_s: float) -> tuple[list[str], list[str]]:
    """(items of the visit under way, items of earlier visits) as of ``now``.

    The stored session is only "current" while it is fresh; once it has timed out, its items are
    the last visit's, even before the next event rolls them over.
    """
    if v.in_session(now, timeout_s):
        return v.session_items, v.last_visit_items
    return [], list(dict.fromkeys([*v.session_items, *v.last_visit_items]))


def history_items(v: VisitorProfile, c: CustomerProfile | None, now: float,
                  timeout_s: float) -> Iterable[tuple[str, float, str]]:
    """What a person has shown interest in, strongest signal first: (item, weight, why).

    Items of the visit under way weigh most and fade with their position, so the last clicks steer
    the next page. ``why`` is the verb of the reason code (``viewed``, ``carted``, ``bought``).
    """
    current, earlier = visit_items(v, now, timeout_s)
    for pos, item in enumerate(current):
        yield item, 3.0 * (0.85 ** pos), "viewed"
    for item in v.cart:
        yield item, 3.0, "carted"
    for pos, item in enumerate(earlier):
        yield item, 1.5 * (0.9 ** pos), "viewed"
    for item in v.purchases:
        yield item, 2.0, "bought"
    if c is not None:
        for item in reversed(c.purchases):
            yield item, 2.0, "bought"
        for pos, item in enumerate(c.recent_items):
            yield item, 1.0 * (0.9 ** pos), "viewed"
