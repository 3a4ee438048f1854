"""`vitrine import` (CSV items and events) and `vitrine replay` (the log or topic applied again)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from api.cli.common import print_report, redis_for
from engine.events.log import EventLog
from engine.events.schema import Event
from engine.ingest import catchup, replay
from engine.ingest.checkpoint import Checkpoint
from engine.ingest.importer import LogUnwritable, import_events, import_events_to_log, import_items
from engine.runtime import Engine
from engine.settings import Settings

# ------------------------------------------------------------------------------- import


async def import_files(settings: Settings, redis_url: str, items: Path | None, events: Path | None) -> None:
    engine = Engine(settings, redis_url)
    try:
        if items is not None:
            print_report("items", items, await import_items(engine.redis, items, events))
        await engine.catalogue.refresh()
        engine.rules.reload(force=True)  # experiment counters count the arms of the rules file only
        if events is not None and settings.mode == "kafka":
            await _import_to_topic(settings, events)
        elif events is not None:
            await _import_to_log(settings, engine, events)
    finally:
        await engine.redis.aclose()


async def _import_to_log(settings: Settings, engine: Engine, events: Path) -> None:
    event_log = EventLog(settings.log_dir, segment_bytes=settings.log_segment_bytes, fsync=settings.log_fsync)
    started = time.perf_counter()
    try:
        report, applied = await import_events_to_log(events, event_log, engine.applier, Checkpoint(engine.redis),
                                                     accepted_at=time.time())
    except LogUnwritable as exc:
        raise SystemExit(f"vitrine import: cannot write the event log in {settings.log_dir} ({exc}); the events "
                         f"before are imported, run the import again once fixed (already-seen events are "
                         f"skipped)") from None
    finally:
        event_log.close()
    print_report("event lines", events, report)
    print(f"  {applied} events applied to profiles in {time.perf_counter() - started:.1f}s "
          f"(already-seen events are skipped)")


async def _import_to_topic(settings: Settings, events: Path) -> None:
    """Kafka mode: the topic is the history (what train and replay read), so imported events go
    there like any other and the workers apply them."""
    from streaming.producer import KafkaSink  # noqa: PLC0415 - faust and aiokafka, for Kafka mode only

    sink = KafkaSink(settings)
    started = time.perf_counter()

    async def send(batch: list[Event]) -> int:
        await sink.submit(batch)
        return len(batch)

    try:
        report, sent = await import_events(events, send, accepted_at=time.time())
    finally:
        await sink.close()
    print_report("event lines", events, report)
    print(f"  {sent} events sent to topic {settings.kafka_events_topic} in {time.perf_counter() - started:.1f}s; "
          f"the workers apply them")


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    if args.items is None and args.events is None:
        print("vitrine import: give --items and/or --events", file=sys.stderr)
        return 2
    for path in (args.items, args.events):
        if path is not None and not path.exists():
            print(f"vitrine import: no such file: {path}", file=sys.stderr)
            return 2
    with redis_for(settings) as url:
        asyncio.run(import_files(settings, url, args.items, args.events))
    return 0


# ------------------------------------------------------------------------------- replay


async def _replay(settings: Settings, redis_url: str, reset: bool) -> int:
    engine = Engine(settings, redis_url, serve_models=False, triggers=not reset)
    try:
        if settings.mode == "kafka" and not reset and await replay.has_profiles(engine.redis):
            print("vitrine replay: Redis already holds profiles; --reset deletes them (and the dedup "
                  "memory, trending, exposure and experiment counters) first", file=sys.stderr)
            return 1
        if reset:
            print(f"deleted {await replay.delete_profiles(engine.redis)} profile keys")
        await engine.catalogue.refresh()
        if not len(engine.catalogue.current):
            print("warning: the catalogue is empty; affinities need it (vitrine import --items)", file=sys.stderr)
        engine.rules.reload(force=True)  # experiment counters count the arms of the rules file only
        for error in engine.rules.errors:
            print(f"warning: {error}", file=sys.stderr)
        if settings.mode == "kafka":
            from streaming.topics import topic_events  # noqa: PLC0415 - faust and aiokafka, for Kafka mode only

            source = f"topic {settings.kafka_events_topic}"
            stats = await replay.replay(engine.applier, topic_events(settings))
        else:
            source = f"log {settings.log_dir}" + ("" if reset else " past the checkpoint")
            caught_up = await catchup.catch_up(engine.applier, engine.redis, settings.log_dir,
                                               dedup_window_s=settings.dedup_window_s)
            if caught_up.skipped:
                print(f"warning: {caught_up.skipped} events could not be applied (see the errors above)",
                      file=sys.stderr)
            if caught_up.assumed_applied:
                print(f"note: no checkpoint yet and Redis holds profiles: events accepted more than "
                      f"{settings.dedup_window_s}s ago were taken as applied; --reset rebuilds everything",
                      file=sys.stderr)
            stats = caught_up
        print(f"replayed {stats.events} events from {source} in {stats.seconds:.1f}s: "
              f"{stats.applied} applied, {stats.duplicates} duplicates skipped")
        return 0
    finally:
        await engine.stop()


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    with redis_for(settings) as url:
        return asyncio.run(_replay(settings, url, args.reset))
