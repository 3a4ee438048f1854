"""How profiles are stored: MessagePack maps with one- or two-letter keys, whole seconds, scores in
thousandths and prices in cents, because Redis memory per visitor is a product bar (<= 400 bytes for a
typical one). Generic over the shapes (``engine.profiles.shapes``), which name their short keys.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

# How fields are stored: whole seconds, scores in thousandths, prices in cents (all integers,
# which MessagePack packs in 1-5 bytes), and nothing for an empty or zero field.
TIME_FIELDS = frozenset({"first_seen", "last_seen", "session_start", "cart_updated", "first_order", "last_order",
                         "withdrawn_at"})
SCORE_FIELDS = frozenset({"category_affinity", "brand_affinity"})


def _milli(value: float) -> int:
    return round(value * 1000)


def _cents(value: float) -> int:
    return round(value * 100)


def _compact(obj: Any, keys: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in keys.items():
        value = getattr(obj, name)
        if value is None or value == 0 or value == [] or value == {}:
            if value is False:  # consent=False must survive
                out[key] = value
            continue
        if name in TIME_FIELDS:
            value = round(value)
        elif name in SCORE_FIELDS:
            value = {k: m for k, v in value.items() if (m := _milli(v)) > 0}
        elif name == "price_mean":
            value = _cents(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def _expand(cls: Any, keys: dict[str, str], data: dict[str, Any] | None, copy: bool = True) -> Any:
    """``copy=False`` for a dict nobody else holds (just decoded): saves a copy of each container
    on every request."""
    if not data:
        return cls()
    values: dict[str, Any] = {}
    for name, key in keys.items():
        if key not in data:
            continue
        value = data[key]
        if name in SCORE_FIELDS:
            value = {k: v / 1000 for k, v in value.items()}
        elif name == "price_mean":
            value = value / 100
        elif copy and isinstance(value, (list, dict)):
            value = type(value)(value)  # a copy: folding events never changes the caller's data
        values[name] = value
    return cls(**values)


def quantize(profile: Any) -> None:
    """Round in memory exactly as storing rounds, so folding n events in a row gives what n
    separate store-and-load steps give (batching never changes a profile)."""
    for name in TIME_FIELDS:
        if hasattr(profile, name):
            setattr(profile, name, float(round(getattr(profile, name))))
    for name in SCORE_FIELDS:
        setattr(profile, name, {k: m / 1000 for k, v in getattr(profile, name).items() if (m := _milli(v)) > 0})


def encode(profile: Any) -> bytes:
    return msgpack.packb(profile.to_json())


EMPTY_PROFILE = msgpack.packb({})


class CorruptProfile(ValueError):
    """A stored value that is not a profile: its events cannot be applied (they dead-letter)."""


def decode_dict(raw: bytes | None) -> dict[str, Any] | None:
    """A stored profile as its short-key dict; profiles written as JSON (before MessagePack) still
    read: a MessagePack map never starts with ``{``."""
    if not raw:
        return None
    try:
        data = orjson.loads(raw) if raw[:1] == b"{" else msgpack.unpackb(raw)
    except ValueError as exc:  # both libraries' decode errors are ValueErrors
        raise CorruptProfile(f"stored profile is not readable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise CorruptProfile(f"stored profile is a {type(data).__name__}, not a map")
    return data
