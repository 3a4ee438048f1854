"""Real public datasets turned into the generic CSV formats of ``vitrine import``.

Online Retail II (UCI, CC BY 4.0, donor Daqing Chen; Chen, Sain & Guo 2012) ships with the repo in
``models/data`` as the demo shop. It has no categories, so ``category_of`` derives a two-level
dotted category from keywords in the product description (documented, deterministic, imperfect:
good enough to demonstrate category affinities, filters and diversity).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
ONLINE_RETAIL = DATA_DIR / "online_retail_ii_2009-2010.csv.gz"
PRODUCT_CODE = re.compile(r"^\d{5}[A-Za-z]{0,2}$")

# (category, keywords): the first rule with a keyword among the description's words wins.
CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("seasonal.christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE", "NATIVITY")),
    ("seasonal.easter", ("EASTER", "BUNNY", "CHICK", "CHICKS")),
    ("lighting.candles", ("CANDLE", "CANDLES", "T-LIGHT", "T-LIGHTS", "CANDLEHOLDER", "TEALIGHT")),
    ("lighting.lights", ("LIGHT", "LIGHTS", "LAMP", "LAMPSHADE", "LANTERN")),
    ("jewellery.necklaces", ("NECKLACE", "NECKLACES")),
    ("jewellery.bracelets", ("BRACELET", "BANGLE")),
    ("jewellery.earrings", ("EARRINGS",)),
    ("jewellery.rings", ("RING", "RINGS")),
    ("jewellery.accessories", ("CHARM", "BROOCH", "BEADS", "HAIR", "CLIP", "SLIDE", "DIAMANTE")),
    ("kitchen.mugs", ("MUG", "MUGS", "CUP", "CUPS", "SAUCER", "TEACUP", "BEAKER")),
    ("kitchen.tableware", ("PLATE", "PLATES", "BOWL", "BOWLS", "DISH", "TRAY", "CUTLERY", "NAPKINS",
                           "PLACEMATS", "COASTER", "COASTERS", "GLASS", "JUG")),
    ("kitchen.baking", ("CAKE", "CASES", "BAKING", "CAKESTAND", "APRON", "TEA", "JAR", "JARS", "TIN",
                        "TINS", "BOTTLE", "LUNCH", "POPCORN", "KITCHEN")),
    ("bags.bags", ("BAG", "BAGS", "HANDBAG", "PURSE", "WASHBAG", "TOTE", "SHOPPER")),
    ("stationery.cards", ("CARD", "CARDS", "WRAP", "TAG", "TAGS", "ENVELOPE", "ENVELOPES")),
    ("stationery.paper", ("NOTEBOOK", "STICKERS", "STICKER", "PEN", "PENCIL", "PENCILS", "TAPE", "ALBUM",
                          "PAPER", "CALENDAR", "DOILIES", "TISSUES", "ERASER")),
    ("toys.toys", ("TOY", "TOYS", "GAME", "DOLL", "JIGSAW", "PUZZLE", "PLAYHOUSE", "SKITTLES", "SPACEBOY",
                   "TEDDY", "DOMINOES", "KIDS", "CHILDRENS")),
    ("party.party", ("PARTY", "BUNTING", "BALLOON", "BALLOONS", "GARLAND", "RIBBONS", "RIBBON", "BANNER")),
    ("home.clocks", ("CLOCK", "ALARM")),
    ("home.frames", ("FRAME", "FRAMES", "MIRROR", "PHOTO")),
    ("home.signs", ("SIGN", "PLAQUE", "LETTERS", "DOORMAT", "DOORSTOP")),
    ("home.storage", ("BOX", "BOXES", "BASKET", "STORAGE", "DRAWER", "CABINET", "CONTAINER", "BUCKET", "CHEST")),
    ("home.textiles", ("CUSHION", "COVER", "CURTAIN", "BLANKET", "THROW", "TOWEL", "QUILT")),
    ("home.hooks", ("HOOK", "HOOKS", "HANGER", "HOLDER", "STAND", "MAGNETS", "MAGNET")),
    ("garden.garden", ("GARDEN", "PLANT", "POT", "WATERING", "BIRD", "PARASOL", "UMBRELLA", "FLOWER", "FLOWERS")),
    ("home.decorations", ("DECORATION", "DECORATIONS", "HEART", "HEARTS", "ORNAMENT", "HANGING", "WREATH", "STAR")),
)
_KEYWORD_RULE = {kw: (rank, cat) for rank, (cat, kws) in enumerate(CATEGORY_RULES) for kw in kws}


def category_of(description: str) -> str:
    ranked = [_KEYWORD_RULE[w] for w in re.split(r"[\s,/]+", description.upper()) if w in _KEYWORD_RULE]
    return min(ranked)[1] if ranked else "gifts.other"


def _online_retail_rows(path: Path) -> Iterator[dict[str, str]]:
    with io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def write_online_retail(out_dir: Path, source: Path = ONLINE_RETAIL) -> tuple[Path, Path]:
    """items.csv and events.csv for the demo shop: every invoice line of a real product with a
    positive quantity and price (cancellations, postage, fees and adjustments are left out)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    titles: dict[str, Counter[str]] = defaultdict(Counter)
    prices: dict[str, list[float]] = defaultdict(list)
    events_path, items_path = out_dir / "events.csv", out_dir / "items.csv"
    with events_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "visitor_id", "customer_id", "event_type", "item_id", "quantity", "price"])
        for row in _online_retail_rows(source):
            code, invoice = row["StockCode"].strip(), row["Invoice"].strip()
            if invoice.startswith("C") or not PRODUCT_CODE.match(code):
                continue
            quantity, price = int(row["Quantity"]), float(row["Price"])
            if quantity <= 0 or price <= 0:
                continue
            customer = row["Customer ID"].strip().removesuffix(".0")
            visitor = f"v{customer}" if customer else f"g{invoice}"
            when = datetime.fromisoformat(row["InvoiceDate"]).isoformat() + "Z"
            writer.writerow([when, visitor, customer, "purchase", code, quantity, price])
            if row["Description"].strip():
                titles[code][row["Description"].strip()] += 1
            prices[code].append(price)
    with items_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "category", "brand", "price", "in_stock"])
        for code in sorted(prices):
            title = titles[code].most_common(1)[0][0] if titles[code] else code
            writer.writerow([code, title.title(), category_of(title), "", round(statistics.median(prices[code]), 2),
                             "true"])
    return items_path, events_path


# Tianchi UserBehavior (Alibaba, research use; Zhu et al., KDD 2018): never committed, read from
# the shared data folder. Its documented window; the head file holds 35 events outside it.
TAOBAO_HEAD = "taobao-userbehavior/UserBehavior_head.csv.gz"
TAOBAO_WINDOW = (1511539200, 1512316800)  # 2017-11-24 16:00 to 2017-12-03 16:00 UTC
TAOBAO_TYPES = {"pv": "product_view", "cart": "add_to_cart", "fav": "add_to_wishlist", "buy": "purchase"}


def write_taobao(out_dir: Path, source: Path) -> tuple[Path, Path]:
    """items.csv and events.csv from the UserBehavior head file: events inside the official
    window, in time order; a favourite is an ``add_to_wishlist``; categories are the ids."""
    rows = []
    categories: dict[str, str] = {}
    with io.TextIOWrapper(gzip.open(source, "rb"), encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh)):
            ts = int(row["timestamp"])
            if not TAOBAO_WINDOW[0] <= ts < TAOBAO_WINDOW[1] or row["behavior_type"] not in TAOBAO_TYPES:
                continue
            rows.append((ts, row["user_id"], line, TAOBAO_TYPES[row["behavior_type"]], row["item_id"]))
            categories.setdefault(row["item_id"], row["category_id"])
    rows.sort()
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, items_path = out_dir / "events.csv", out_dir / "items.csv"
    with events_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "visitor_id", "customer_id", "event_type", "item_id", "quantity", "price"])
        for ts, user, _, event_type, item in rows:
            when = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow([when, f"u{user}", "", event_type, item, "", ""])
    with items_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "category", "brand", "price", "in_stock"])
        for item, category in sorted(categories.items()):
            writer.writerow([item, "", f"c{category}", "", "", "true"])
    return items_path, events_path


@dataclass(frozen=True)
class Dataset:
    """A named real dataset for ``vitrine evaluate --dataset``, and the settings that fit the shop it
    comes from."""

    test_days: float
    exclude_seen: bool
    exclude_purchased: bool
    why: str


DATASETS: dict[str, Dataset] = {
    "taobao": Dataset(1, exclude_seen=False, exclude_purchased=True, why=(
        "Taobao UserBehavior head (../shared/data): views, carts, favourites, purchases over 9 days; "
        "people come back to items they viewed, rarely rebuy the same one within days")),
    "online-retail": Dataset(30, exclude_seen=False, exclude_purchased=False, why=(
        "UCI Online Retail II 2009-2010 (models/data): a wholesale gift shop's orders; customers "
        "restock the same items, so already-bought items stay in the lists")),
}
