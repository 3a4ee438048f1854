"""Service-level gates for a load run: which endpoints broke their p99 or error-rate budget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointStats:
    name: str
    requests: int
    failures: int
    p99_ms: float


@dataclass(frozen=True)
class Slo:
    p99_ms: float = 100.0
    max_error_rate: float = 0.01
    min_requests: int = 1


def breaches(stats: list[EndpointStats], slo: Slo) -> list[str]:
    """Human-readable breaches; empty means the run passed."""
    out = []
    total = sum(s.requests for s in stats)
    if total < slo.min_requests:
        out.append(f"only {total} requests were made (at least {slo.min_requests} expected)")
    for s in stats:
        if s.requests == 0:
            continue
        if s.p99_ms > slo.p99_ms:
            out.append(f"{s.name}: p99 {s.p99_ms:.0f} ms > {slo.p99_ms:.0f} ms")
        rate = s.failures / s.requests
        if rate > slo.max_error_rate:
            out.append(f"{s.name}: error rate {rate:.2%} > {slo.max_error_rate:.2%} "
                       f"({s.failures}/{s.requests})")
    return out
