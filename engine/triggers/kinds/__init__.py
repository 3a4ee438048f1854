"""What each trigger kind does: one module per kind, registered in ``KINDS`` by its name.

A kind module declares ``SCOPE`` (whose occurrence it is: the ``visitor`` cookie or the
``customer``), ``EVENTS`` (the event types it reads on the apply path; empty for a kind driven
by something else, such as a catalogue change; a catalogue-driven kind's scope is ``watcher``: the
person the watchers index names) and two pure functions:

- ``on_event(trigger, seen) -> Arm | Cancel | Moved | Noted | None``: what an applied event does
  to the person's pending occurrence (``engine.triggers.decisions``; ``Moved``: a recorded value
  changed; ``Noted``: a view or cart add counted for a catalogue-driven kind);
- ``still_due(trigger, person, data) -> bool``: at the due time, whether it still applies.

Its parameters are a model in ``engine.merch.schema`` (the rules file is validated without the
behaviour). A catalogue-driven kind (price drop, back in stock) has no ``EVENTS`` but an
``on_item_changed(trigger, old, new) -> data | None`` (whether the change fires it) and a
``reaches(trigger, data, watcher) -> bool`` (whether that watcher, with their price alert or their
views and cart adds, gets it);
``engine.triggers.hook`` fans out to the people its ``INDEX`` names: ``watchers`` (the default, the
item's watchers) or ``interests`` (the declared-interest index, fanned out by ``engine.triggers.catalogue``).
"""

from __future__ import annotations

from types import ModuleType

from engine.merch.schema import TRIGGER_KINDS
from engine.triggers.kinds import browse, cart, churn, newitem, price, stock, tier, welcome

KINDS: dict[str, ModuleType] = {"cart_abandoned": cart, "browse_abandoned": browse, "churn_risk": churn,
                                "welcome": welcome, "price_drop": price, "back_in_stock": stock,
                                "value_tier": tier, "new_item": newitem}
assert set(KINDS) == set(TRIGGER_KINDS), "every kind the rules file accepts has its module"
_BY_EVENT: dict[str, tuple[str, ...]] = {}
for _name, _module in KINDS.items():
    for _type in _module.EVENTS:
        _BY_EVENT[_type] = (*_BY_EVENT.get(_type, ()), _name)


def interested(event_type: str) -> tuple[str, ...]:
    """The kinds an event type can arm or cancel (most events: none, nothing to do)."""
    return _BY_EVENT.get(event_type, ())
