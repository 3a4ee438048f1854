"""Fail fast while Redis is not answering: the circuit breaker of the request path's reads.

A recommendation's or block's Redis read has a time budget (``VITRINE_REDIS_TIMEOUT_S``). Against a
Redis that accepts commands but does not answer (stopped, swapping, stuck in a long script), every
request would wait out that whole budget before answering degraded. So once ``failures`` reads in a
row have failed, the breaker opens: for ``open_s`` no read is tried and requests answer degraded at
once. Then the next request probes (half-open): while it runs, the others still skip Redis; its
success closes the breaker, its failure opens it again. One slow read on a busy machine (a pause of
the process, a long script in Redis) degrades that one answer only; a Redis that stopped answering
fails every read in flight at once, so the breaker still opens within one budget.

The probe holds the breaker for at most one read budget rather than behind a flag, so a probe
whose caller went away (a cancelled request) cannot leave it open for ever: once the budget is
over, the next request probes.

Hand-written rather than a library (``pybreaker``, ``aiobreaker``): those wrap every call (a lock,
listeners, state objects), where on the healthy path this must cost one comparison per request.
"""

from __future__ import annotations


class Breaker:
    __slots__ = ("open_s", "probe_s", "failures", "failed_in_row", "open_until", "trips", "skipped")

    def __init__(self, open_s: float, probe_s: float, failures: int) -> None:
        """``open_s``: how long reads are skipped once open; ``probe_s``: the longest a probe read can
        take (its time budget); ``failures``: failed reads in a row that open it."""
        self.open_s = open_s
        self.probe_s = probe_s
        self.failures = failures
        self.failed_in_row = 0
        self.open_until = 0.0  # 0: closed; else reads are skipped until then (clock of the callers' ``now``)
        self.trips = 0  # times it opened after being closed
        self.skipped = 0  # reads not tried because it was open

    @property
    def closed(self) -> bool:
        return not self.open_until

    def allow(self, now: float) -> bool:
        """Whether to read Redis now. The first caller after the open window becomes the probe."""
        if not self.open_until:
            return True
        if now < self.open_until:
            self.skipped += 1
            return False
        self.open_until = now + self.probe_s  # half-open: the others skip while this one probes
        return True

    def succeeded(self) -> None:
        if self.failed_in_row:
            self.failed_in_row = 0
        if self.open_until:
            self.open_until = 0.0

    def failed(self, now: float) -> None:
        """A read timed out or the connection failed: open for ``open_s`` once ``failures`` did in a
        row, or at once after a failed probe."""
        if not self.open_until:
            self.failed_in_row += 1
            if self.failed_in_row < self.failures:
                return
            self.trips += 1
        self.failed_in_row = 0
        self.open_until = now + self.open_s
