"""Consent, decided here and nowhere else: whether an event withdraws it, whether a person may be
profiled and personalised, and what a cookie keeps once they withdrew. Every reader (the fold, the
applier, recommendations, blocks) asks these functions.
"""

from __future__ import annotations

from engine.events.schema import Event
from engine.profiles.shapes import CustomerProfile, VisitorProfile


def withdraws(event: Event) -> bool:
    """A withdrawal: a consent event that does not grant it, or any event the browser sent with
    Global Privacy Control, whatever it says."""
    return event.gpc or (event.type == "consent" and not event.properties.get("granted"))


def granted(v: VisitorProfile, c: CustomerProfile | None) -> bool:
    """The person granted consent (on this cookie, or as the customer) and has not withdrawn it."""
    if v.consent is False or (c is not None and c.consent is False):
        return False
    return v.consent is True or (c is not None and c.consent is True)


def forget(v: VisitorProfile, ts: float, *, consent: bool | None) -> VisitorProfile:
    """What a cookie keeps once its person withdrew consent: when it was seen, the choice and
    the customer it belongs to; no behaviour."""
    return VisitorProfile(first_seen=v.first_seen or ts, last_seen=max(v.last_seen, ts), consent=consent,
                          customer_id=v.customer_id, withdrawals=v.withdrawals, withdrawn_at=v.withdrawn_at)


def last_withdrawal(v: VisitorProfile, c: CustomerProfile | None) -> float:
    """When the person last withdrew consent, on this cookie or as the customer (0: never). A model
    trained before then still holds what they did before it, even once they grant consent again."""
    return max(v.withdrawn_at, c.withdrawn_at if c is not None else 0.0)


def stale(v: VisitorProfile, c: CustomerProfile | None) -> bool:
    """The customer withdrew consent (on any device) since this cookie's behaviour was recorded."""
    return c is not None and v.withdrawals < c.withdrawals


def current(v: VisitorProfile, c: CustomerProfile | None) -> VisitorProfile:
    """The cookie as it may be used with customer ``c``: a withdrawal on another device forgets
    this cookie's behaviour too, even if the cookie has not been seen since (and so was not
    rewritten), and even once consent is granted again."""
    if c is None or not stale(v, c):
        return v
    forgotten = forget(v, v.last_seen, consent=v.consent)
    forgotten.withdrawals = c.withdrawals
    return forgotten


def withdrawn(v: VisitorProfile, c: CustomerProfile | None, required: bool = False) -> bool:
    """The person withdrew consent, on this cookie or (as a customer) on another device, or consent
    is ``required`` (opt-in) and neither the cookie nor its customer granted it: no personalisation
    from anything stored about them, nothing profiled until they grant it."""
    if v.consent is False or (c is not None and c.consent is False):
        return True
    return required and v.consent is not True and (c is None or c.consent is not True)
