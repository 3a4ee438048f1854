"""What a visitor was shown and clicked: the state behind frequency caps, anti-repetition and
experiment attribution, and how one event changes it (pure, like ``engine.profiles``).

It lives in its own key, ``x:{visitor_id}``, because it matters only for days (the longest cap
window) while a profile lives for months: the key's TTL is ``VITRINE_EXPOSURE_RETENTION_S`` and
every write drops what is older. It is written by ``engine.ingest.apply`` in the same compare-and-set as
the profile, so impressions, clicks and attributed purchases count exactly once.

Layout (compact on purpose, load_tests/README.md has the measured sizes): a small JSON object, then a
newline, then the item impressions packed by minute: 3 bytes of minute, 1 byte of count, then
3 bytes per item (the low 24 bits of the item id's CRC-32; a collision can only make an item
look shown once more, at odds of about one in 500,000 for a visitor who saw 30 items).
Minutes count from 2020-01-01 UTC.
- ``b``: block id -> minutes of its last impressions (at most ``MAX_CAP``; at most ``MAX_BLOCKS``
  blocks, least recently shown dropped first). Caps up to ``MAX_CAP`` are therefore exact.
- ``e``: experiment -> [arm, attributed revenue, converted 0/1]: the visitor counts once per arm
  (at most ``MAX_EXPERIMENTS``, the oldest dropped first).
- ``k``: item -> [experiment, arm, minute] of the last recommendation click on it (attribution).

The experiment and arm come back from the browser in the recommendation id, so anyone can send
any name: only arms the live rules can assign are counted (``known``), so a forged id creates
no counter key and no state. A visitor can still report clicks on an arm they were never shown,
as they can report any click; ids are not signed.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from engine.events.schema import Event
from engine.merch.schema import MAX_CAP
from engine.store import keys

MAX_BLOCKS = 16
MAX_ITEM_IMPRESSIONS = 200
MAX_CLICKS = 10
MAX_EXPERIMENTS = 16
EVENTS = frozenset({"block_impression", "recommendation_click", "purchase"})
RECO_STRIP_PREFIX = "reco:"  # block_id of a plain recommendation strip: counts items, not caps
_HEAD = struct.Struct("<I")  # minute (3 bytes) and count (1 byte), little-endian in one int
EPOCH_2020 = 1577836800
Increment = tuple[str, str, float]  # (counter key, member, increment)
KnownArm = Callable[[str, str], bool]  # (experiment, arm) -> the live rules can assign it


def item_hash(item_id: str) -> int:
    return zlib.crc32(item_id.encode()) & 0xFFFFFF


def parse_recommendation_id(value: object) -> tuple[str, str] | None:
    """``<random>.<experiment>.<arm>`` -> (experiment, arm); ids without an arm -> None."""
    if not isinstance(value, str):
        return None
    parts = value.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[1], parts[2]


@dataclass
class Exposure:
    blocks: dict[str, list[int]] = field(default_factory=dict)
    items: list[tuple[int, int]] = field(default_factory=list)  # (item hash, minute), oldest first
    experiments: dict[str, list[Any]] = field(default_factory=dict)
    clicks: dict[str, list[Any]] = field(default_factory=dict)

    def encode(self) -> bytes:
        head: dict[str, Any] = {}
        for key, value in (("b", self.blocks), ("e", self.experiments), ("k", self.clicks)):
            if value:
                head[key] = value
        packed = bytearray()
        i = 0
        while i < len(self.items):
            m = self.items[i][1]
            run = [h for h, _ in itertools.takewhile(lambda e: e[1] == m, self.items[i:i + 255])]
            packed += _HEAD.pack(m | len(run) << 24)
            for h in run:
                packed += h.to_bytes(3, "little")
            i += len(run)
        return orjson.dumps(head) + b"\n" + bytes(packed)

    @classmethod
    def decode(cls, raw: bytes | None) -> "Exposure":
        if not raw:
            return cls()
        head, _, packed = raw.partition(b"\n")
        data = orjson.loads(head) if head else {}
        items: list[tuple[int, int]] = []
        pos = 0
        while pos + 4 <= len(packed):
            word = _HEAD.unpack_from(packed, pos)[0]
            m, count = word & 0xFFFFFF, word >> 24
            pos += 4
            items += [(int.from_bytes(packed[p:p + 3], "little"), m) for p in range(pos, pos + 3 * count, 3)]
            pos += 3 * count
        return cls(blocks=data.get("b", {}), items=items, experiments=data.get("e", {}),
                   clicks=data.get("k", {}))

    # ------------------------------------------------------------ reads (request path)

    def block_impressions(self, block_ids: Iterable[str], since_minute: int) -> int:
        return sum(1 for b in block_ids for m in self.blocks.get(b, ()) if m >= since_minute)

    def items_shown(self, since_minute: int) -> Counter[int]:
        return Counter(h for h, m in self.items if m >= since_minute)


EMPTY = Exposure().encode()


def minute(ts: float) -> int:
    """Minutes since 2020-01-01 UTC: fits 3 bytes until 2051."""
    return max(int((ts - EPOCH_2020) // 60), 0)


def _prune(x: Exposure, now_minute: int, retention_min: int, attribution_min: int) -> None:
    oldest = now_minute - retention_min
    for block in list(x.blocks):
        kept = [m for m in x.blocks[block] if m >= oldest]
        if kept:
            x.blocks[block] = kept
        else:
            del x.blocks[block]
    x.items = [(h, m) for h, m in x.items if m >= oldest][-MAX_ITEM_IMPRESSIONS:]
    x.clicks = {i: c for i, c in x.clicks.items() if c[2] >= now_minute - attribution_min}


def _experiment_state(x: Exposure, experiment: str, arm: str) -> list[Any]:
    state = x.experiments.get(experiment)
    if state is None:
        state = x.experiments[experiment] = [arm, 0.0, 0]
        while len(x.experiments) > MAX_EXPERIMENTS:
            del x.experiments[next(iter(x.experiments))]
    return state


def _exposed(x: Exposure, experiment: str, arm: str, out: list[Increment]) -> None:
    if experiment not in x.experiments:
        _experiment_state(x, experiment, arm)
        out.append((keys.experiment(experiment), f"{arm}:visitors", 1.0))


def fold(x: Exposure, event: Event, price_of: Callable[[str], float | None], *, retention_s: int,
         attribution_s: int, known: KnownArm) -> list[Increment]:
    """Fold one event into ``x`` (in place); return the experiment counters it bumps."""
    out: list[Increment] = []
    now = minute(event.ts)
    arm = parse_recommendation_id(event.properties.get("recommendation_id"))
    if arm is not None and not known(*arm):
        arm = None  # a forged or stale id: shown and clicked items still count, no experiment does
    if event.type == "block_impression":
        block_id = str(event.properties["block_id"])
        if not block_id.startswith(RECO_STRIP_PREFIX):
            shown = x.blocks.pop(block_id, [])  # re-insert: most recently shown last
            x.blocks[block_id] = [*shown, now][-MAX_CAP:]
            while len(x.blocks) > MAX_BLOCKS:
                del x.blocks[next(iter(x.blocks))]
        x.items.extend((item_hash(li.item_id), now) for li in event.line_items())
        if arm is not None:
            _exposed(x, *arm, out)
            out.append((keys.experiment(arm[0]), f"{arm[1]}:impressions", 1.0))
    elif event.type == "recommendation_click" and arm is not None and event.item_id:
        _exposed(x, *arm, out)
        out.append((keys.experiment(arm[0]), f"{arm[1]}:clicks", 1.0))
        x.clicks.pop(event.item_id, None)
        x.clicks[event.item_id] = [arm[0], arm[1], now]
        while len(x.clicks) > MAX_CLICKS:
            del x.clicks[next(iter(x.clicks))]
    elif event.type == "purchase" and x.clicks:
        for li in event.line_items():
            click = x.clicks.get(li.item_id)
            if click is None or now - click[2] > attribution_s // 60 or not known(click[0], click[1]):
                continue  # no click to attribute to, too old, or its experiment is gone from the rules
            experiment, arm_name = click[0], click[1]
            price = li.price if li.price is not None else (price_of(li.item_id) or 0.0)
            amount = round(price * li.quantity, 2)
            state = _experiment_state(x, experiment, arm_name)
            key = keys.experiment(experiment)
            before = state[1]
            state[1] = round(before + amount, 2)
            out.append((key, f"{arm_name}:revenue", amount))
            out.append((key, f"{arm_name}:revenue_sq", state[1] ** 2 - before ** 2))
            if not state[2]:
                state[2] = 1
                out.append((key, f"{arm_name}:conversions", 1.0))
    _prune(x, now, retention_s // 60, attribution_s // 60)
    return out


async def experiment_counters(redis: Redis, experiment_id: str) -> dict[str, float]:
    """``<arm>:visitors|impressions|clicks|...`` -> count, as the apply path recorded them."""
    raw = await redis.zrange(keys.experiment(experiment_id), 0, -1, withscores=True)
    return {member.decode(): score for member, score in raw}
