"""Consent, decided here and nowhere else: whether an event withdraws it, whether a person may be
profiled and personalised, and what a cookie keeps once they withdrew. Every reader (the fold, the
applier, recommendations, blocks) asks these functions.
"""

from __future__ import annotations

from engine.events.schema import CHANNELS, Event
from engine.profiles.shapes import CustomerProfile, VisitorProfile


def withdraws(event: Event) -> bool:
    """A withdrawal of consent to profiling: a profiling consent event that does not grant it, or
    any event the browser sent with Global Privacy Control, whatever it says."""
    return event.profiling_choice() is False


def grants(event: Event) -> bool:
    return event.profiling_choice() is True


def channel_choice(event: Event) -> tuple[str, bool] | None:
    """(channel, granted) for a consent event about being contacted (email, push, on_site)."""
    purpose = event.properties.get("purpose", "profiling")
    if event.type != "consent" or purpose == "profiling":
        return None
    return str(purpose), event.properties.get("granted") is True


def state(v: VisitorProfile, c: CustomerProfile | None, required: bool) -> dict[str, str]:
    """Consent per purpose as people read it: granted, withdrawn, or not_given (profiling then
    runs unless consent is ``required``; nobody is contacted)."""
    if withdrawn(v, c):
        profiling = "withdrawn"
    elif granted(v, c):
        profiling = "granted"
    else:
        profiling = "not_given" if required else "not_given (profiled until withdrawn)"
    out = {"profiling": profiling}
    for channel in CHANNELS:
        # Contact only on an explicit grant, never after a refusal on any of the person's records.
        choices = [p.channels[channel] for p in (v, c) if p is not None and channel in p.channels]
        out[channel] = "not_given" if not choices else "granted" if all(choices) else "withdrawn"
    return out


def granted(v: VisitorProfile, c: CustomerProfile | None) -> bool:
    """The person granted consent (on this cookie, or as the customer) and has not withdrawn it."""
    if v.consent is False or (c is not None and c.consent is False):
        return False
    return v.consent is True or (c is not None and c.consent is True)


def forget(v: VisitorProfile, ts: float, *, consent: bool | None) -> VisitorProfile:
    """What a cookie keeps once its person withdrew consent: when it was seen, the choice and
    the customer it belongs to; no behaviour."""
    return VisitorProfile(first_seen=v.first_seen or ts, last_seen=max(v.last_seen, ts), consent=consent,
                          customer_id=v.customer_id, withdrawals=v.withdrawals, withdrawn_at=v.withdrawn_at,
                          channels=dict(v.channels))


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
