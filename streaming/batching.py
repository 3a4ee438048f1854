"""The agent's batches: events taken from faust's stream until nothing more arrives in time.

faust hands the agent one message per turn of the event loop, so its channel is often empty
between two messages of the same fetch; a batch cut there holds a few events, and each batch pays
its Redis round trips and the applier's per-call work. So a batch stays open until nothing is
waiting at its deadline (``VITRINE_KAFKA_BATCH_LINGER_MS`` after its first event) or it is full.

The held events are not acknowledged, and faust will not finish a rebalance or a stop until every
event it handed out is (``Consumer.wait_empty``), while its stream iterator, once asked for the
next event, may wait for one that the paused consumer never delivers. So a timer applies a batch
still held at its deadline whatever the iterator is doing; the next batch waits for it (one
partition's events stay in order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

R = TypeVar("R")


async def arrives(channel: Any, deadline: float) -> bool:
    """Whether an event is waiting in ``channel`` (a faust channel) by ``deadline`` (loop time),
    yielding the loop meanwhile so that faust's consumer can deliver it."""
    loop = asyncio.get_running_loop()
    while channel.empty():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0)
    return True


class Batches(Generic[R]):
    """Feeds the agent's events to ``apply`` (which must acknowledge them) in batches."""

    def __init__(self, apply: Callable[[list[Any]], Awaitable[R]], channel: Any, *, linger_s: float,
                 batch_max: int) -> None:
        self._apply, self._channel = apply, channel
        self._linger_s, self._batch_max = linger_s, batch_max
        self._held: list[Any] = []
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Future[R] | None = None
        self._busy = False  # in ``add``: it applies the batch itself by the deadline

    async def add(self, event: Any) -> list[R]:
        """Holds ``event``; returns what was applied meanwhile (nothing while the batch is open)."""
        self._busy = True
        try:
            done = [await self._flushed()] if self._flushing is not None else []
            loop = asyncio.get_running_loop()
            self._held.append(event)
            if len(self._held) == 1:
                self._deadline = loop.time() + self._linger_s
                self._timer = loop.call_at(self._deadline, self._on_deadline)
            if len(self._held) < self._batch_max and await arrives(self._channel, self._deadline):
                return done  # back to faust's iterator for the next one; the timer guards the batch
            return [*done, await self._apply_held()]
        finally:
            self._busy = False

    async def _flushed(self) -> R:
        flushing, self._flushing = self._flushing, None
        assert flushing is not None
        return await flushing

    async def _apply_held(self) -> R:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        return await self._apply(held)

    def _on_deadline(self) -> None:
        self._timer = None
        if self._held and not self._busy:  # the agent waits in faust's iterator: apply for it
            self._flushing = asyncio.ensure_future(self._apply_held())
