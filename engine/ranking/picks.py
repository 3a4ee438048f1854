"""What every candidate source returns: an item, its score and the reason it is there."""

from __future__ import annotations

from typing import NamedTuple


class Pick(NamedTuple):  # a tuple, not a dataclass: tens of them are made per request
    item_id: str
    score: float
    reason: str
