"""engine.ingest.isolate: bad events are found by halving, the good ones apply in per-visitor order,
transient failures are left to the caller. Pure logic: the applier is a stand-in that records
what it was asked to apply (the real one is exercised in tests/engine/ingest/test_writer.py and
tests/streaming/test_agent.py)."""

from __future__ import annotations

import asyncio
import math

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from engine.events.schema import Event
from engine.ingest.apply import ApplyStats
from engine.ingest.isolate import apply_isolating, by_visitor


def view(n: int, visitor: str) -> Event:
    return Event(event_id=f"e{n}", type="product_view", visitor_id=visitor, item_id="i", ts=1.0, rt=1.0)


class Applier:
    """Applies nothing to Redis: fails a call holding a bad event (as ``EventApplier.apply`` does:
    all or nothing for the call), else records the events as applied, in order."""

    def __init__(self, bad: set[str], error: Exception | None = None) -> None:
        self.bad = bad
        self.error = error
        self.calls = 0
        self.applied: list[str] = []

    async def apply(self, events: list[Event]) -> ApplyStats:
        self.calls += 1
        if any(e.event_id in self.bad for e in events):
            raise self.error or ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        self.applied += [e.event_id for e in events]
        return ApplyStats(applied=len(events), rounds=1)


def test_a_clean_batch_is_one_call() -> None:
    applier = Applier(bad=set())
    events = [view(n, f"v{n % 3}") for n in range(10)]
    outcome = asyncio.run(apply_isolating(applier.apply, events))
    assert (applier.calls, outcome.stats.applied, outcome.rejected) == (1, 10, [])


def test_the_bad_events_are_rejected_and_every_other_one_applies_in_visitor_order() -> None:
    events = [view(n, f"v{n % 4}") for n in range(40)]
    applier = Applier(bad={"e5", "e22"})
    outcome = asyncio.run(apply_isolating(applier.apply, events))
    assert sorted(r.event.event_id for r in outcome.rejected) == ["e22", "e5"]
    assert all(isinstance(r.error, ResponseError) for r in outcome.rejected)
    assert outcome.stats.applied == 38 and sorted(applier.applied) == sorted(f"e{n}" for n in range(40) if n not in (5, 22))
    for visitor in ("v0", "v1", "v2", "v3"):  # each visitor's events in their order, around the bad ones
        mine = [e.event_id for e in events if e.visitor_id == visitor]
        assert [i for i in applier.applied if i in mine] == [i for i in mine if i not in applier.bad]


@pytest.mark.parametrize("n", [2, 100, 5000])
def test_one_bad_event_costs_a_logarithmic_number_of_calls(n: int) -> None:
    """Trying each event alone would cost n calls; halving costs at most 2 per level."""
    events = [view(k, f"v{k}") for k in range(n)]
    applier = Applier(bad={f"e{n // 3}"})
    outcome = asyncio.run(apply_isolating(applier.apply, events))
    assert [r.event.event_id for r in outcome.rejected] == [f"e{n // 3}"] and outcome.stats.applied == n - 1
    assert applier.calls <= 1 + 2 * math.ceil(math.log2(n))


def test_a_bad_visitor_interleaved_with_others_is_found_together() -> None:
    """One visitor whose every event fails (a corrupt profile), spread over the batch: grouping by
    visitor puts its events side by side, so they cost about as much as one bad event."""
    events = [view(k, "v-bad" if k % 50 == 0 else f"v{k}") for k in range(1000)]  # 20 bad among 1000
    applier = Applier(bad={e.event_id for e in events if e.visitor_id == "v-bad"})
    outcome = asyncio.run(apply_isolating(applier.apply, events))
    assert len(outcome.rejected) == 20 and outcome.stats.applied == 980
    assert applier.calls <= 2 * (math.ceil(math.log2(1000)) + 20)


def test_a_transient_failure_propagates_for_the_caller_to_retry() -> None:
    applier = Applier(bad={"e1"}, error=RedisConnectionError("Connection refused"))
    with pytest.raises(RedisConnectionError):
        asyncio.run(apply_isolating(applier.apply, [view(0, "a"), view(1, "b")]))
    assert applier.calls == 1


def test_grouping_keeps_first_appearance_order() -> None:
    events = [view(0, "b"), view(1, "a"), view(2, "b"), view(3, "c"), view(4, "a")]
    assert [e.event_id for e in by_visitor(events)] == ["e0", "e2", "e1", "e4", "e3"]
