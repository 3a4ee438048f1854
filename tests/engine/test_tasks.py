"""Background tasks stop even when a cancellation is swallowed (engine.tasks)."""

from __future__ import annotations

import asyncio
import random

from engine import tasks
from engine.store.connect import connect


def test_stop_ends_a_task_that_swallows_a_cancellation() -> None:
    async def main() -> None:
        swallowed = 0

        async def stubborn() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed += 1  # what asyncio.wait_for does on 3.11 when the inner call just finished

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        assert await tasks.stop(task, timeout_s=2)
        assert task.cancelled() and swallowed == 1

    asyncio.run(main())


def test_stop_gives_up_on_a_task_that_never_ends() -> None:
    async def main() -> None:
        alive = True

        async def immortal() -> None:
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if not alive:
                        raise

        task = asyncio.create_task(immortal())
        await asyncio.sleep(0)
        assert not await tasks.stop(task, timeout_s=0.3)
        assert not task.done()
        alive = False
        assert await tasks.stop(task, timeout_s=1)

    asyncio.run(main())


def test_loops_over_a_real_redis_stop_whenever_they_are_cancelled(redis_url: str) -> None:
    """The client has a socket timeout, so redis-py sends through asyncio.wait_for: a plain
    cancel() lands there, and is lost, for a good share of these loops; stop() ends every one."""

    async def main() -> None:
        redis = connect(redis_url, timeout_s=5.0)
        rng = random.Random(7)
        lost = 0

        async def poll() -> None:
            while True:
                await redis.get("catalogue:version")
                await asyncio.sleep(0)

        try:
            for _ in range(60):
                task = asyncio.create_task(poll())
                await asyncio.sleep(rng.random() * 0.002)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=0.05)
                lost += not done
                assert await tasks.stop(task, timeout_s=10)  # a loaded machine (the whole suite) needs more than 2 s
        finally:
            await redis.aclose()
        print(f"plain cancel() lost in {lost} of 60 loops")

    asyncio.run(main())
