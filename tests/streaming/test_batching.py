"""The agent's batching (streaming.batching) on its own: what goes into one batch, and a batch held
while faust's iterator waits is still applied (else a rebalance waits for its acks forever)."""

from __future__ import annotations

import asyncio

from streaming.batching import Batches


class Channel:
    """Stands in for faust's channel: only ``empty()`` is asked."""

    def __init__(self) -> None:
        self.waiting = 0

    def empty(self) -> bool:
        return self.waiting == 0


class Applied:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, batch: list[str]) -> int:
        await asyncio.sleep(0)  # a round trip to Redis
        self.batches.append(batch)
        return len(batch)


def test_events_waiting_in_the_channel_join_the_batch_up_to_its_size() -> None:
    async def scenario() -> None:
        channel, applied = Channel(), Applied()
        batches = Batches(applied, channel, linger_s=0.001, batch_max=3)
        channel.waiting = 5
        results = []
        for n in range(5):
            channel.waiting -= 1  # faust's iterator took it from the channel
            results += await batches.add(f"e{n}")
            if n == 3:
                assert applied.batches == [["e0", "e1", "e2"]] and results == [3]
        # e4: nothing more arrives, so the batch is applied once the linger is over
        assert applied.batches == [["e0", "e1", "e2"], ["e3", "e4"]] and results == [3, 2]

    asyncio.run(scenario())


def test_a_batch_held_while_the_iterator_waits_is_applied_by_its_deadline() -> None:
    """An event was waiting, so the agent went back to faust's iterator, which then skipped it (a
    rebalance began) and waits for a message the paused consumer will not send."""
    async def scenario() -> None:
        channel, applied = Channel(), Applied()
        batches = Batches(applied, channel, linger_s=0.002, batch_max=100)
        channel.waiting = 1
        assert await batches.add("e0") == []
        for _ in range(1000):  # far beyond the deadline
            if applied.batches:
                break
            await asyncio.sleep(0.001)
        assert applied.batches == [["e0"]]
        channel.waiting = 0
        assert await batches.add("e1") == [1, 1]  # the timer's batch is reported first, in order
        assert applied.batches == [["e0"], ["e1"]]

    asyncio.run(scenario())
