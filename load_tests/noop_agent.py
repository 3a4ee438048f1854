"""A faust agent that does nothing, for ``vitrine bench-stream``: faust's own per-message ceiling.

``python -m load_tests.noop_agent --expect N --out result.json`` (settings from the environment, as
for ``vitrine worker``) consumes the events topic with the worker's faust options, transport and
event loop, and only counts. Once ``N`` events have gone by it writes how long they took from the
first one; the bench compares the worker's rate with it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faust

from engine.settings import Settings
from load_tests.reports import cpu_use
from streaming.app import faust_options
from streaming.worker import use_uvloop


class Counter:
    """Counts events; writes the rate once ``expect`` have been seen."""

    def __init__(self, expect: int, out: Path) -> None:
        self.expect, self.out = expect, out
        self.seen, self.first_at, self.first_cpu = 0, 0.0, 0.0

    def count(self, n: int) -> None:
        if not self.seen:
            self.first_at, self.first_cpu = time.perf_counter(), time.process_time()
        self.seen += n
        if self.seen == self.expect:
            elapsed = time.perf_counter() - self.first_at
            rate = round((self.seen - 1) / elapsed) if elapsed > 0 else None
            used = cpu_use(time.process_time() - self.first_cpu, elapsed, self.seen - 1)
            self.out.write_text(json.dumps({"events": self.seen, "seconds": round(elapsed, 2), "events_per_s": rate,
                                            **used}))


def build_app(settings: Settings, counter: Counter) -> faust.App:
    app = faust.App(settings.kafka_group_id, **faust_options(settings))
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms  # read by streaming.transport
    topic = app.topic(settings.kafka_events_topic, partitions=settings.kafka_partitions)

    async def do_nothing(stream: faust.StreamT) -> Any:
        async for _ in stream.events():
            counter.count(1)

    app.agent(topic, name="do-nothing")(do_nothing)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", type=int, required=True, help="events on the topic")
    parser.add_argument("--out", type=Path, required=True, help="where the result goes (JSON)")
    args = parser.parse_args()
    use_uvloop()
    app = build_app(Settings(), Counter(args.expect, args.out))
    faust.Worker(app, loglevel="warn", redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
