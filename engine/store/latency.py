"""How long Redis takes to answer, per kind of call: cumulative buckets for a Prometheus histogram.

Kept here rather than as a ``prometheus_client.Histogram`` because the engine serves several
registries (each API app has its own, a worker has one) and because this sits on the request path:
an observation is one bisect and two additions, without the client library's lock. The HTTP layer
and the worker export the counts at scrape time (``engine.observe``).
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds; a Redis on the same host answers in tens of microseconds, a loaded one in milliseconds.
BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class LatencyHistogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # a bound is an inclusive upper limit
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) for each bound, then ``+Inf``: Prometheus's buckets."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts):
            running += count
            out.append((bound, running))
        return out


class RedisLatency:
    """One histogram per kind of call (``read``: the request path's profile reads; ``apply_read`` and
    ``apply_write``: the event applier's pipelines), shared by a process's Engine."""

    def __init__(self) -> None:
        self.by_call: dict[str, LatencyHistogram] = {}

    def histogram(self, call: str) -> LatencyHistogram:
        return self.by_call.setdefault(call, LatencyHistogram())
