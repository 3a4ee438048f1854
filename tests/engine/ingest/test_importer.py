"""Imported event ids come from what the rows say, not from where they are in which file."""

from __future__ import annotations

from pathlib import Path

from engine.ingest.importer import ImportReport, read_events

HEADER = "timestamp,visitor_id,customer_id,event_type,item_id,quantity,price\n"
ROWS = ["2024-01-01T10:00:00Z,v1,,product_view,A,,\n",
        "2024-01-01T10:00:00Z,v1,,product_view,A,,\n",  # the same view twice in one second: two events
        "2024-01-01T10:01:00Z,v1,c1,purchase,A,2,3.5\n",
        "2024-01-01T10:01:00Z,v1,c1,purchase,B,1,12\n",
        "2024-01-01T10:03:00Z,v2,,product_view,B,,\n"]


def ids(path: Path, rows: list[str]) -> list[str]:
    path.write_text(HEADER + "".join(rows))
    report = ImportReport()
    out = [e.event_id for e in read_events(path, report, accepted_at=0.0)]
    assert report.error_count == 0, report.errors
    return out


def test_the_same_rows_get_the_same_ids_whatever_the_file_name_or_position(tmp_path: Path) -> None:
    first = ids(tmp_path / "export.csv", ROWS)
    assert len(first) == 4 and len(set(first)) == 4  # identical rows stay distinct events
    renamed = ids(tmp_path / "export-2024-01-02.csv", ROWS)
    assert renamed == first
    new_row = "2024-01-01T09:59:00+00:00,v3,,add_to_cart,C,1,\n"
    grown = ids(tmp_path / "grown.csv", [new_row, *ROWS[:2], new_row, *ROWS[2:]])
    assert set(first) < set(grown) and len(grown) == 6
    # the same instant written another way is the same event
    assert ids(tmp_path / "offset.csv", [ROWS[4].replace("Z", "+00:00")]) == first[-1:]


def test_any_column_changes_the_id(tmp_path: Path) -> None:
    base = ids(tmp_path / "a.csv", ["2024-01-01T10:00:00Z,v1,,add_to_cart,A,1,2\n"])
    for changed in ("2024-01-01T10:00:01Z,v1,,add_to_cart,A,1,2\n", "2024-01-01T10:00:00Z,v2,,add_to_cart,A,1,2\n",
                    "2024-01-01T10:00:00Z,v1,c1,add_to_cart,A,1,2\n", "2024-01-01T10:00:00Z,v1,,product_view,A,1,2\n",
                    "2024-01-01T10:00:00Z,v1,,add_to_cart,B,1,2\n", "2024-01-01T10:00:00Z,v1,,add_to_cart,A,3,2\n",
                    "2024-01-01T10:00:00Z,v1,,add_to_cart,A,1,4\n"):
        assert ids(tmp_path / "b.csv", [changed]) != base, changed
