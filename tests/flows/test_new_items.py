"""New items: ``added_at`` comes from the shop's data (an items.csv column, else the item's first
event in the history imported with it), so "new arrivals" are new, not whatever was imported last."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import redis

from api.cli.data import import_files
from engine.catalog import load_catalogue
from engine.ingest.importer import ImportReport, first_event_times, read_items
from engine.merch.schema import Selector
from engine.merch.selectors import matches
from tests.conftest import make_settings

ITEMS = ("item_id,title,category,brand,price,in_stock,added_at\n"
         "A,Mug,home.kitchen,acme,5,true,2024-03-01T00:00:00Z\n"
         "B,Lamp,home.lights,lumo,40,true,1700000000\n"
         "C,Cup,home.kitchen,acme,4,true,\n"
         "D,Bowl,home.kitchen,acme,6,true,\n"
         "E,Plate,home.kitchen,acme,7,true,last tuesday\n")
EVENTS = ("timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
          "2024-01-02T10:00:00Z,v1,,product_view,C,,\n"
          "2024-01-01T10:00:00Z,v2,,product_view,C,,\n"
          "not a time,v2,,product_view,D,,\n"
          "2024-01-05T10:00:00Z,v3,,product_view,A,,\n")


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


def test_added_at_column_iso_or_unix_and_bad_values_reported(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(ITEMS)
    report = ImportReport()
    items = {i.item_id: i for i in read_items(path, report)}
    assert items["A"].added_at == ts("2024-03-01T00:00:00") and items["B"].added_at == 1_700_000_000
    assert items["C"].added_at is None
    assert report.error_count == 1 and report.errors[0].startswith("line 6: added_at")


def test_first_event_times_are_each_items_earliest_event(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(EVENTS)
    assert first_event_times(path) == {"C": ts("2024-01-01T10:00:00"), "A": ts("2024-01-05T10:00:00")}


def test_import_stamps_items_from_the_data_not_with_the_import_time(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "events.csv").write_text(EVENTS)
    settings = make_settings(tmp_path / "data", redis_url)
    before = time.time()
    asyncio.run(import_files(settings, redis_url, tmp_path / "items.csv", tmp_path / "events.csv"))

    async def load() -> dict:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return (await load_catalogue(client)).items
        finally:
            await client.aclose()

    items = asyncio.run(load())
    assert items["A"].added_at == ts("2024-03-01T00:00:00")  # the column wins over the first event
    assert items["C"].added_at == ts("2024-01-01T10:00:00")  # no column: its first event
    assert items["D"].added_at >= before  # neither: first seen in the catalogue, now
    new = Selector(new_arrivals="30d")
    assert [i for i in "ABCD" if matches(new, items[i], time.time())] == ["D"]
