"""The declared-interest index: per favourite category (``ic:{category}``) and per favourite brand
(``ib:{brand}``), a set of the people (``v:ID``/``c:ID``) who declared it
(``engine.profiles.preferences``). A new item reaches the people whose favourites match it through
the index of its category, its parent categories and its brand, never a scan of profiles.

Writers move the entries with the record in one transaction (``index``); an erasure or a merge
drops them (``unindex``). ``engine.profiles.preferences.interested`` checks each entry against the
person's record as it reads them and drops those that no longer stand (a record expired or
changed), as the watchers index does.
"""

from __future__ import annotations

from typing import Any, Protocol

from engine.profiles.affinity import lineage
from engine.store import keys


class Declared(Protocol):
    """The favourites of a record (``engine.profiles.preferences.Declared``)."""
    categories: list[str]
    brands: list[str]


def _keys(categories: list[str], brands: list[str]) -> set[str]:
    return {*(keys.interest_category(c) for c in categories), *(keys.interest_brand(b) for b in brands)}


def index_keys(declared: Declared) -> set[str]:
    """The entries a record has."""
    return _keys(declared.categories, declared.brands)


def index(pipe: Any, member: str, new: Declared, old: Declared) -> None:
    """Queued on ``pipe`` (the record's own transaction): the entries ``new`` adds and ``old`` had."""
    before, after = _keys(old.categories, old.brands), _keys(new.categories, new.brands)
    for key in before - after:
        pipe.srem(key, member)
    for key in after - before:
        pipe.sadd(key, member)


def unindex(pipe: Any, member: str, declared: Declared) -> None:
    for key in _keys(declared.categories, declared.brands):
        pipe.srem(key, member)


def item_keys(category: str | None, brand: str | None) -> list[str]:
    """The index entries an item with this category and brand matches."""
    out = [keys.interest_category(c) for c in lineage(category)] if category else []
    if brand and brand.strip():
        out.append(keys.interest_brand(brand.strip().lower()))
    return out
