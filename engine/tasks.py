"""Stopping background tasks reliably.

On Python 3.11, ``asyncio.wait_for`` returns the inner result and drops a cancellation that
arrives just as the inner operation completes (CPython gh-86296, fixed in 3.12 by reimplementing
it on ``asyncio.timeout``). redis-py sends every command through ``wait_for`` once a socket
timeout is set, so a loop cancelled while it writes to Redis can carry on as if nothing happened,
and a shutdown that waits for it never ends. ``stop`` therefore cancels until the task has ended.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


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
