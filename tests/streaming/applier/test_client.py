"""The consumer's side of the applier process, in this process, with a real applier process and a
real Redis: batches sent to an applier that dies are applied, in order, by the next one."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import uvloop

from streaming.applier.client import ApplierProcess
from streaming.processor import BatchResult, Record
from tests.conftest import make_settings
from tests.streaming.test_agent import stored_visitor, view

ITEMS = ["85123A", "71053", "84406B", "22752"]


def test_batches_unanswered_when_the_applier_dies_are_applied_in_order_by_the_next(tmp_path: Path,
                                                                                  redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url)
    batches = [[Record(view(f"e-{n}", "v-1", item), offset=n)] for n, item in enumerate(ITEMS)]

    async def run() -> None:
        applier = ApplierProcess(settings, redis_url)
        ready = await applier.start()
        assert ready.metrics_port is None  # no metrics port set: none served
        first_pid = applier.pid
        assert first_pid is not None
        try:
            assert (await applier(batches[0])).applied == 1
            sent = [asyncio.ensure_future(applier(batch)) for batch in batches[1:]]
            await asyncio.sleep(0)  # written to the socket
            os.kill(first_pid, signal.SIGKILL)
            results = await asyncio.wait_for(asyncio.gather(*sent), 60)
            assert applier.pid not in (None, first_pid)
            # Each was applied once, by whichever process got to it first.
            assert [r.applied + r.duplicates for r in results] == [1, 1, 1]
            assert (await applier(batches[0])).duplicates == 1  # the new one knows what the old applied
        finally:
            await applier.stop()
        assert applier.pid is None

    asyncio.run(run())
    assert asyncio.run(stored_visitor(redis_url, "v-1"))["si"] == list(reversed(ITEMS))


def test_batches_sent_while_the_applier_dies_are_applied_by_the_next(tmp_path: Path, redis_url: str) -> None:
    """On the worker's loop (uvloop's), a transport refuses writes once a write found its peer
    gone: the batches sent in that moment, before the consumer notices, wait for the next process."""
    settings = make_settings(tmp_path, redis_url)
    batches = [[Record(view(f"e-{n}", f"v-{n % 7}", ITEMS[n % len(ITEMS)]), offset=n)] for n in range(200)]

    async def run() -> list[BatchResult]:
        applier = ApplierProcess(settings, redis_url)
        await applier.start()
        first_pid = applier.pid
        assert first_pid is not None
        try:
            sent = []
            for n, batch in enumerate(batches):
                if n == 20:
                    os.kill(first_pid, signal.SIGKILL)
                sent.append(asyncio.ensure_future(applier(batch)))
                await asyncio.sleep(0.001)  # a busy consumer hands one over every millisecond or so
            results = await asyncio.wait_for(asyncio.gather(*sent), 60)
            assert applier.pid not in (None, first_pid)
            return results
        finally:
            await applier.stop()

    results = uvloop.run(run())
    assert [r.applied + r.duplicates for r in results] == [1] * len(batches)


def test_a_garbage_record_comes_back_as_a_dead_letter_and_the_rest_is_applied(tmp_path: Path,
                                                                              redis_url: str) -> None:
    settings = make_settings(tmp_path, redis_url)
    records = [Record(b"not json", offset=1), Record(view("e-1", "v-2", "85123A"), offset=2)]

    async def run() -> None:
        applier = ApplierProcess(settings, redis_url)
        await applier.start()
        try:
            result = await applier(records)
        finally:
            await applier.stop()
        assert result.applied == 1
        assert [(d.record.offset, d.error.split(":")[0]) for d in result.dead] == [(1, "not a valid event")]

    asyncio.run(run())
