"""Webhook delivery: a JSON document POSTed with an HMAC-SHA256 signature, retried with
exponential backoff and jitter (``engine.triggers.runner`` schedules the retries and the dead
letter).

The signature header is ``Vitrine-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256(secret, ``<t>.<body>``): the receiver recomputes it over the raw body and refuses
an old ``t`` (a replay). ``Idempotency-Key`` repeats the document's ``id``: a document may
arrive twice (a lease ran out mid-post), never with two ids.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time

import httpx

HEADER = "Vitrine-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does (README.md has it as a snippet to copy)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempt: int, base_s: float, max_s: float, rng: random.Random = random.Random()) -> float:
    """Before retry ``attempt`` (1 = the first retry): ``base * 2^(attempt-1)``, capped, times a
    random factor in [0.5, 1.5) so that receivers back from an outage are not hit all at once."""
    return min(base_s * 2 ** min(attempt - 1, 32), max_s) * (0.5 + rng.random())


async def post(client: httpx.AsyncClient, url: str, secret: str, body: bytes, key: str) -> str | None:
    """None on a 2xx; else why it failed (a status or an error name), for the retry log. Signed
    at the wall-clock time of the post (what the receiver compares with its own clock)."""
    headers = {"Content-Type": "application/json", HEADER: signature(secret, int(time.time()), body),
               "Idempotency-Key": key}
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.is_success else f"HTTP {response.status_code}"
