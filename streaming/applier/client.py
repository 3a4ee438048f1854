"""The consumer's side of its applier process (``streaming.applier.child``): start it, hand it
batches, restart it if it dies, stop it with the worker.

Batches are written to the applier as they come, without waiting for the answer to the one
before: it reads the next while it applies one, so it never waits for the consumer. It applies
and answers them in the order they were sent. If it dies, a new one is started and every batch
not yet answered is sent to it again, in the same order: such a batch may have been applied in
part or whole, which the applier's per-event dedup makes harmless, and it is acknowledged only
once an answer came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections import deque
from typing import Any

from engine import tasks
from engine.settings import Settings, as_environment
from streaming.applier.frames import Ready, read_frame, write_frame
from streaming.processor import MAX_BACKOFF_S, BatchResult, Record

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 30.0  # for the batch being applied and the engine's own stop


class ApplierGone(Exception):
    """The applier process exited (or was killed) before answering."""


class ApplierProcess:
    def __init__(self, settings: Settings, redis_url: str, loglevel: str = "info") -> None:
        self._env = as_environment(settings.model_copy(update={"redis_url": redis_url}))
        self._loglevel = loglevel
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None  # set while a ready process takes batches
        self._unanswered: deque[tuple[list[Record], asyncio.Future[BatchResult]]] = deque()
        self._streak = tasks.FailureStreak("stream-applier", first_backoff_s=0.1, max_backoff_s=MAX_BACKOFF_S,
                                           expected=lambda exc: isinstance(exc, ApplierGone))
        self._started = asyncio.Event()
        self._sessions: asyncio.Task[None] | None = None
        self.ready: Ready | None = None  # what the current (or last) process said when it was up

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> Ready:
        """Returns once a process is up; retries (logged) until one is."""
        self._sessions = asyncio.create_task(self._run(), name="vitrine-applier-process")
        await self._started.wait()
        assert self.ready is not None
        return self.ready

    async def __call__(self, records: list[Record]) -> BatchResult:
        """The batch applied by the applier process, however many times it has to be started."""
        answer: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._unanswered.append((records, answer))
        self._send(records)
        return await answer

    def _send(self, records: list[Record]) -> None:
        """Written to the current process if it takes batches; otherwise, or if it just died and
        the session has not noticed yet, the next one is sent it with every batch unanswered."""
        if self._writer is not None:
            with contextlib.suppress(ConnectionResetError):
                write_frame(self._writer, records)

    async def stop(self) -> None:
        if self._sessions is not None:
            self._sessions.cancel()
            await asyncio.gather(self._sessions, return_exceptions=True)
        await self._end()

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except Exception as exc:  # noqa: BLE001 - whatever ended it, the worker needs an applier
                await self._end()
                await asyncio.sleep(self._streak.failed(exc))

    async def _session(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "streaming.applier.child", str(theirs.fileno()), self._loglevel,
                env=self._env, pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        try:
            self.ready = await self._answer(reader)
            log.info("applier process %d ready: %d catalogue items", self._process.pid, self.ready.items)
            self._unanswered = deque(entry for entry in self._unanswered if not entry[1].done())
            for records, _ in self._unanswered:  # again, in order, before any new batch
                write_frame(writer, records)
            self._writer = writer
            self._streak.succeeded()
            self._started.set()
            while True:
                result = await self._answer(reader)
                _, answer = self._unanswered.popleft()
                if not answer.done():  # its caller may have been cancelled (the worker stops)
                    answer.set_result(result)
        finally:
            self._writer = None
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> Any:
        try:
            return await read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self._process.wait() if self._process is not None else None
            raise ApplierGone(f"the applier process exited with {code}") from exc

    async def _end(self) -> None:
        """Wait for the process to leave (its socket is closed: its cue); kill it if it lingers."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("applier process %d did not stop within %.0f s: killed", process.pid, STOP_TIMEOUT_S)
            process.kill()
            await process.wait()
