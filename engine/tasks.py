"""Background tasks: supervised so they cannot die, and stopped reliably.

**Supervision.** A long-lived task (polling, the apply writer, retraining, retention) is a *step*
run over and over by ``supervise``. A step that raises is retried with exponential backoff, for
ever: one bad tick (a Redis that stops answering, a bug hit by one input) must not end the loop
silently while the process keeps serving stale data. Each failure is counted per task name
(``count_failures_with``: api.metrics exports them as ``vitrine_task_failures_total``), but only
the first of a streak is logged, with its cause, so an outage of hours is one log line (and one
more when the task recovers). A job that ends (a catch-up at start, a stream worker's batch)
is retried the same way by ``retry``, until it succeeds.

**Stopping.** On Python 3.11, ``asyncio.wait_for`` returns the inner result and drops a
cancellation that arrives just as the inner operation completes (CPython gh-86296, fixed in 3.12
by reimplementing it on ``asyncio.timeout``). redis-py sends every command through ``wait_for``
once a socket timeout is set, so a loop cancelled while it writes to Redis can carry on as if
nothing happened, and a shutdown that waits for it never ends. ``stop`` therefore cancels until
the task has ended.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

log = logging.getLogger(__name__)

FailureCounter = Callable[[str, int], None]  # (task name, failures to add; 0 announces the task)
Step = Callable[[], Awaitable[float | None]]  # one round of a task; returns the pause before the next
T = TypeVar("T")

_counters: list[FailureCounter] = []
_failures: dict[str, int] = {}  # failures per task name in this process, since it started
_lock = threading.Lock()


def count_failures_with(counter: FailureCounter) -> None:
    """Also report task failures to ``counter`` (once per counter, however often it is given),
    starting with the tasks already known."""
    if counter in _counters:
        return
    _counters.append(counter)
    for name, failures in list(_failures.items()):
        counter(name, failures)


def failures(name: str) -> int:
    """Failures of the task ``name`` in this process so far."""
    return _failures.get(name, 0)


def _count(name: str, n: int) -> None:
    with _lock:  # the retrainer's thread counts too
        _failures[name] = _failures.get(name, 0) + n
    for counter in _counters:
        counter(name, n)


def _never(exc: BaseException) -> bool:
    return False


class FailureStreak:
    """The failures of one task since its last success: count each one, log the first with its
    cause (and the recovery), and say how long to wait before the next try."""

    def __init__(self, name: str, *, first_backoff_s: float = 0.1, max_backoff_s: float = 30.0,
                 expected: Callable[[BaseException], bool] = _never) -> None:
        """``expected`` tells the failures that need no traceback (e.g. Redis unreachable): they
        are logged as a warning with their message; the others as an error with the stack."""
        self.name = name
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max(max_backoff_s, first_backoff_s)
        self.expected = expected
        self.failures = 0
        _count(name, 0)

    def failed(self, exc: BaseException) -> float:
        """Record a failure; the seconds to wait before retrying."""
        self.failures += 1
        _count(self.name, 1)
        if self.failures == 1:
            if self.expected(exc):
                log.warning("%s failed (%s: %s); retrying with backoff until it succeeds",
                            self.name, type(exc).__name__, exc)
            else:
                log.error("%s failed (%s: %s); retrying with backoff until it succeeds",
                          self.name, type(exc).__name__, exc, exc_info=exc)
        return min(self.first_backoff_s * 2 ** min(self.failures - 1, 64), self.max_backoff_s)

    def succeeded(self) -> None:
        if self.failures:
            log.warning("%s recovered after %d failed attempts", self.name, self.failures)
            self.failures = 0


async def supervise(step: Step, streak: FailureStreak, *, first_pause_s: float = 0.0) -> NoReturn:
    """Run ``step`` for ever: after a success wait what it returned (None: go on at once), after a
    failure the streak's backoff. Only cancellation ends it."""
    if first_pause_s:
        await asyncio.sleep(first_pause_s)
    while True:
        try:
            pause = await step()
        except Exception as exc:  # noqa: BLE001 - the point: nothing ends the loop but a cancellation
            await asyncio.sleep(streak.failed(exc))
            continue
        streak.succeeded()
        if pause:
            await asyncio.sleep(pause)


async def retry(call: Callable[[], Awaitable[T]], streak: FailureStreak, *,
                retry_if: Callable[[BaseException], bool] = lambda exc: True) -> T:
    """``supervise`` for a job that ends: ``call`` until it succeeds, backing off after each
    failure ``retry_if`` accepts; any other failure propagates."""
    while True:
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - as in supervise
            if not retry_if(exc):
                raise
            await asyncio.sleep(streak.failed(exc))
            continue
        streak.succeeded()
        return result


def start(name: str, step: Step, *, first_pause_s: float = 0.0, first_backoff_s: float = 0.1,
          max_backoff_s: float = 30.0, expected: Callable[[BaseException], bool] = _never) -> asyncio.Task[NoReturn]:
    """``supervise`` ``step`` in a task of the running loop, named ``vitrine-<name>``; its failures
    count as ``name``'s."""
    streak = FailureStreak(name, first_backoff_s=first_backoff_s, max_backoff_s=max_backoff_s, expected=expected)
    return asyncio.create_task(supervise(step, streak, first_pause_s=first_pause_s), name=f"vitrine-{name}")


def every(interval_s: float, action: Callable[[], Awaitable[object]]) -> Step:
    """A step that runs ``action`` then pauses ``interval_s``: a poll."""
    async def step() -> float:
        await action()
        return interval_s
    return step


def supervise_thread(name: str, step: Callable[[], float | None], stop: threading.Event, *,
                     first_backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                     expected: Callable[[BaseException], bool] = _never) -> None:
    """``supervise`` for a blocking step in a thread of its own, until ``stop`` is set."""
    streak = FailureStreak(name, first_backoff_s=first_backoff_s, max_backoff_s=max_backoff_s,
                           expected=expected)
    while not stop.is_set():
        try:
            pause = step()
        except Exception as exc:  # noqa: BLE001 - as in supervise
            stop.wait(streak.failed(exc))
            continue
        streak.succeeded()
        if pause:
            stop.wait(pause)


async def stop(task: asyncio.Task[object], timeout_s: float = 5.0) -> bool:
    """Cancel ``task`` and wait for it to end, re-cancelling while it runs; False if it outlived
    ``timeout_s`` (it is left cancelled and logged)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("task %s did not stop within %ss", task.get_name(), timeout_s)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s ended with an error", task.get_name(), exc_info=task.exception())
    return True
