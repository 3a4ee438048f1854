"""Load a shop's export: items and historical events from CSV in documented generic formats.

items.csv:  item_id,title,category,brand,price,in_stock      (category: dotted path, a.b.c)
events.csv: timestamp,visitor_id,customer_id,event_type,item_id,quantity,price
            (timestamp ISO 8601; consecutive purchase lines with the same timestamp, visitor and
            customer form one order, which is what "bought together" learns from)

Bad rows are skipped and reported with their line number; the good ones are loaded. An event's id
is a hash of its row's content (every column; all the rows of an order) and of how many identical
rows came before it in the file, so the same export imported again, under another name or with
rows added, gives the same ids: training never counts an event twice, and neither do profiles
within ``VITRINE_DEDUP_WINDOW_S`` (the apply path's memory of event ids).

Imported events take the path of accepted ones: in embedded mode the API's sink (the event log,
then the apply writer: ``import_events_to_log``), in Kafka mode the topic.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import ValidationError

from engine.catalog import Item
from engine.events.schema import Event, LineItem
from engine.events.fields import field_errors
from engine.ingest.writer import DRAIN_TIMEOUT_S, EmbeddedSink, SinkUnavailable

if TYPE_CHECKING:
    from engine.events.log import EventLog
    from engine.ingest.apply import EventApplier
    from engine.ingest.checkpoint import Checkpoint

ITEM_COLUMNS = ("item_id", "title", "category", "brand", "price", "in_stock")
EVENT_COLUMNS = ("timestamp", "visitor_id", "customer_id", "event_type", "item_id", "quantity", "price")
IMPORTABLE_TYPES = frozenset({"product_view", "add_to_cart", "remove_from_cart", "add_to_wishlist", "purchase",
                              "recommendation_click"})
_TRUE = {"", "1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


@dataclass
class ImportReport:
    rows: int = 0
    loaded: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(f"line {line}: {message}")


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _reader(fh: IO[str], required: tuple[str, ...], path: Path) -> csv.DictReader:
    reader = csv.DictReader(fh)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected header {','.join(required)}")
    return reader


def _messages(exc: ValidationError) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc, whole="row"))


def read_items(path: Path, report: ImportReport) -> Iterator[Item]:
    with _open(path) as fh:
        for line, row in enumerate(_reader(fh, ("item_id",), path), start=2):
            report.rows += 1
            stock = (row.get("in_stock") or "").strip().lower()
            if stock not in _TRUE | _FALSE:
                report.error(line, f"in_stock: expected true/false, got {stock!r}")
                continue
            try:
                item = Item(
                    item_id=(row.get("item_id") or "").strip(),
                    title=(row.get("title") or "").strip(),
                    category=(row.get("category") or "").strip() or None,
                    brand=(row.get("brand") or "").strip() or None,
                    price=_number(row, "price", float),
                    in_stock=stock in _TRUE,
                )
            except ValueError as exc:
                report.error(line, _messages(exc) if isinstance(exc, ValidationError) else str(exc))
                continue
            report.loaded += 1
            yield item


def _number(row: dict[str, str], name: str, cast: type[int] | type[float]) -> float | int | None:
    value = (row.get(name) or "").strip()
    if not value:
        return None
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"{name}: not {'an integer' if cast is int else 'a number'}: {value!r}") from None


def _timestamp(value: str) -> float:
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


class _EventIds:
    """Ids from content: two identical rows (the same view twice in one second) are two events,
    told apart by their occurrence among identical rows (one digest remembered per distinct row)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def __call__(self, rows: list[tuple[dict[str, str], float]]) -> str:
        content = "\x1e".join("\x1f".join([repr(ts), *((row.get(c) or "").strip() for c in EVENT_COLUMNS[1:])])
                               for row, ts in rows)
        digest = hashlib.blake2b(content.encode(), digest_size=10).digest()
        occurrence = self._seen.get(digest, 0)
        self._seen[digest] = occurrence + 1
        return "imp-" + hashlib.blake2b(digest + occurrence.to_bytes(8, "little"), digest_size=10).hexdigest()


def read_events(path: Path, report: ImportReport, *, accepted_at: float) -> Iterator[Event]:
    """Events in file order; purchase lines of one order are merged into one purchase event."""
    order: list[tuple[int, dict[str, str], float]] = []
    event_id = _EventIds()

    def flush() -> Iterator[Event]:
        if not order:
            return
        first_line, row, ts = order[0]
        try:
            items = tuple(LineItem(item_id=(r.get("item_id") or "").strip(),
                                   quantity=_number(r, "quantity", int) or 1, price=_number(r, "price", float))
                          for _, r, _ in order)
            event = Event(event_id=event_id([(r, t) for _, r, t in order]), type="purchase",
                          visitor_id=row["visitor_id"].strip(), customer_id=(row.get("customer_id") or "").strip() or None,
                          items=items, ts=ts, rt=accepted_at)
        except (ValueError, ValidationError) as exc:
            report.error(first_line, _messages(exc) if isinstance(exc, ValidationError) else str(exc))
        else:
            report.loaded += len(order)
            yield event
        order.clear()

    with _open(path) as fh:
        for line, row in enumerate(_reader(fh, EVENT_COLUMNS, path), start=2):
            report.rows += 1
            etype = (row.get("event_type") or "").strip()
            if etype not in IMPORTABLE_TYPES:
                yield from flush()
                report.error(line, f"event_type: expected one of {sorted(IMPORTABLE_TYPES)}, got {etype!r}")
                continue
            try:
                ts = _timestamp(row.get("timestamp") or "")
            except ValueError:
                yield from flush()
                report.error(line, f"timestamp: not ISO 8601: {row.get('timestamp')!r}")
                continue
            if etype == "purchase":
                if order and (order[0][2], order[0][1]["visitor_id"], order[0][1].get("customer_id")) != (
                        ts, row["visitor_id"], row.get("customer_id")):
                    yield from flush()
                order.append((line, row, ts))
                continue
            yield from flush()
            try:
                event = Event(
                    event_id=event_id([(row, ts)]),
                    type=etype,  # type: ignore[arg-type]
                    visitor_id=(row.get("visitor_id") or "").strip(),
                    customer_id=(row.get("customer_id") or "").strip() or None,
                    item_id=(row.get("item_id") or "").strip(),
                    quantity=_number(row, "quantity", int),
                    price=_number(row, "price", float),
                    ts=ts,
                    rt=accepted_at,
                )
            except ValueError as exc:
                report.error(line, _messages(exc) if isinstance(exc, ValidationError) else str(exc))
                continue
            report.loaded += 1
            yield event
        yield from flush()


# ------------------------------------------------------------------------------- loading


EVENT_BATCH = 1000


class LogUnwritable(Exception):
    """The event log could not be written: the events before are imported, the rest are not."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.strerror or str(cause))
        self.cause = cause


async def import_events(path: Path, consume: Callable[[list[Event]], Awaitable[int]], *,
                        accepted_at: float) -> tuple[ImportReport, int]:
    """The file's good events handed to ``consume`` in batches; the report and the sum of what
    ``consume`` counted (applied, or sent)."""
    report, counted, batch = ImportReport(), 0, []
    for event in read_events(path, report, accepted_at=accepted_at):
        batch.append(event)
        if len(batch) == EVENT_BATCH:
            counted += await consume(batch)
            batch = []
    if batch:
        counted += await consume(batch)
    return report, counted


async def import_events_to_log(path: Path, event_log: EventLog, applier: EventApplier, checkpoint: Checkpoint, *,
                               accepted_at: float) -> tuple[ImportReport, int]:
    """Embedded mode: imported events take the API's path (``EmbeddedSink``): the log, then the
    apply writer, which isolates events that cannot be applied and moves the checkpoint past what
    it applied, so no start applies them again and an import cut short is finished by the next
    start. Each batch waits for its apply, so the import goes at the pace of Redis; if Redis stops
    answering, the rest still goes to the log (for the next start). The report and the events
    applied; :class:`LogUnwritable` when the log cannot be written. The caller closes the log."""
    sink = EmbeddedSink(event_log, applier, checkpoint, timeout_s=None)

    async def log_then_apply(batch: list[Event]) -> int:
        try:
            await sink.submit(batch)
        except SinkUnavailable as exc:
            assert isinstance(exc.__cause__, OSError)  # the sink raises it from the disk's error
            raise LogUnwritable(exc.__cause__) from None
        return 0

    try:
        report, _ = await import_events(path, log_then_apply, accepted_at=accepted_at)
    finally:
        await sink.writer.close(DRAIN_TIMEOUT_S)
    return report, sink.writer.applied
