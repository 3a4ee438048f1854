"""Redis reply times as Prometheus buckets: inclusive upper bounds, cumulative counts, and the
request path's reader observing each reply (against a real Redis)."""

from __future__ import annotations

import asyncio

from engine.store.connect import connect
from engine.store.latency import LatencyHistogram, RedisLatency
from engine.store.reads import PipelinedReader


def test_a_bound_is_an_inclusive_upper_limit_and_counts_are_cumulative() -> None:
    h = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):
        h.observe(seconds)
    assert h.cumulative() == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert abs(h.total - 0.5035) < 1e-12


def test_one_histogram_per_kind_of_call() -> None:
    latency = RedisLatency()
    assert latency.histogram("read") is latency.histogram("read")
    assert set(latency.by_call) == {"read"}


def test_the_pipelined_reader_observes_each_reply(redis_url: str) -> None:
    histogram = LatencyHistogram()

    async def main() -> None:
        client = connect(redis_url, timeout_s=5.0)
        reader = PipelinedReader(client, histogram)
        try:
            await reader.mget(["a"])
            await asyncio.gather(*(reader.mget(["b", "c"]) for _ in range(5)))
        finally:
            await reader.aclose()
            await client.aclose()

    asyncio.run(main())
    assert histogram.cumulative()[-1] == ("+Inf", 6)  # AUTH/SELECT at connect are not counted
    assert 0 < histogram.total < 6 * 5.0
