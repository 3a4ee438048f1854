"""Real visitor journeys to replay: the Taobao stream sample when present, else the demo shop.

The Taobao UserBehavior stream sample (Alibaba Tianchi, research use; never committed) is read
from the shared data folder (``VITRINE_SHARED_DATA_DIR``); its users' events, in time order, become
journeys, with the event types ``vitrine evaluate`` gives them (a favourite is ``add_to_wishlist``). Where it is
absent, journeys are made from the demo shop's real orders (Online Retail II): each order's items
viewed, then bought.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.settings import Settings
from models.datasets import ONLINE_RETAIL, PRODUCT_CODE, TAOBAO_TYPES

TAOBAO_STREAM_SAMPLE = "taobao-userbehavior/UserBehavior_stream_sample_20171126.csv.gz"


def taobao_stream(settings: Settings | None = None) -> Path:
    return (settings or Settings()).shared_data_dir / TAOBAO_STREAM_SAMPLE


@dataclass(frozen=True)
class Step:
    event_type: str
    item_id: str


@dataclass(frozen=True)
class Journey:
    source_user: str
    steps: tuple[Step, ...]


def taobao_journeys(path: Path) -> list[Journey]:
    users: dict[str, list[tuple[int, Step]]] = defaultdict(list)
    with io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            etype = TAOBAO_TYPES.get(row["behavior_type"])
            if etype:
                users[row["user_id"]].append((int(row["timestamp"]), Step(etype, row["item_id"])))
    return [Journey(user, tuple(step for _, step in sorted(events, key=lambda e: e[0])))
            for user, events in users.items()]


def demo_journeys(limit: int = 5000, seed: int = 11) -> list[Journey]:
    orders: dict[str, list[str]] = defaultdict(list)
    with io.TextIOWrapper(gzip.open(ONLINE_RETAIL, "rb"), encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["Invoice"].startswith("C") and PRODUCT_CODE.match(row["StockCode"]) and int(row["Quantity"]) > 0:
                orders[row["Invoice"]].append(row["StockCode"])
    rng = random.Random(seed)
    chosen = rng.sample(sorted(orders), min(limit, len(orders)))
    journeys = []
    for invoice in chosen:
        items = list(dict.fromkeys(orders[invoice]))[:8]
        steps = [Step("product_view", i) for i in items] + [Step("add_to_cart", items[-1]),
                                                            Step("purchase", items[-1])]
        journeys.append(Journey(invoice, tuple(steps)))
    return journeys


def load_journeys(dataset: str = "auto") -> tuple[str, list[Journey]]:
    """(name of the source used, journeys). ``auto``: Taobao if present, else the demo shop."""
    if dataset in ("auto", "taobao"):
        path = taobao_stream()
        if path.exists():
            return "taobao", taobao_journeys(path)
        if dataset == "taobao":
            raise FileNotFoundError(f"Taobao stream sample not found at {path} "
                                    "(set VITRINE_SHARED_DATA_DIR); use --dataset demo")
        print(f"Taobao stream sample not found at {path}: replaying the demo shop's orders instead")
    return "demo", demo_journeys()


def sessions_from_baskets(events_csv: Path, visitors: int, seed: int) -> list[list[tuple[str, str]]]:
    """Browsing sessions made of real baskets of an events.csv in the `vitrine import` format: each
    real order's items viewed one by one, the last one added to the cart, as (event type, item id).
    Online Retail has purchases only, so orders stand in for visits."""
    baskets: dict[tuple[str, str], list[str]] = defaultdict(list)
    with events_csv.open() as fh:
        for row in csv.DictReader(fh):
            baskets[(row["visitor_id"], row["timestamp"])].append(row["item_id"])
    rng = random.Random(seed)
    chosen = rng.sample([b for b in baskets.values() if 3 <= len(b) <= 40], visitors)
    sessions = []
    for items in chosen:
        viewed = list(dict.fromkeys(items))[:12]
        sessions.append([("product_view", i) for i in viewed] + [("add_to_cart", viewed[-1])])
    return sessions


def cycle(journeys: list[Journey], seed: int = 3) -> Iterator[Journey]:
    order = list(journeys)
    random.Random(seed).shuffle(order)
    while True:
        yield from order
