"""``python -m streaming.applier.child FD LOGLEVEL``: a worker's applier process.

Started by the worker's consumer (``streaming.applier.client``) with the worker's settings in its
environment (its Redis URL too: never on a command line) and one end of a socket pair as ``FD``.
It runs the worker's engine (catalogue, rules and model polls, the applier) and answers each batch
of records with its ``BatchResult``: applied, or set aside as dead letters for the consumer to
send.

It leaves when the consumer does: the socket closing (a stop, or the consumer killed) ends it,
even while a batch is retrying against an unreachable Redis; the batch is then unacknowledged and
delivered again, and the applier's dedup makes that exact. A terminal's Ctrl-C, or a service
manager's SIGTERM, may reach the whole process group: this process ignores both and waits for its
consumer, stopping, to close the socket (a consumer that hangs is the manager's to kill, and then
this process leaves too).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import start_http_server

from engine import logs
from engine.observe import EngineCollector
from engine.runtime import Engine
from engine.settings import Settings
from engine.tenants import work_for
from streaming.applier.frames import Ready, read_frame, write_frame
from streaming.processor import LocalApply

log = logging.getLogger(__name__)
METRICS_NAMESPACE = "vitrine_applier"  # its process families, apart from the consumer's own


def _start_metrics(engine: Engine, host: str) -> Any:
    registry = CollectorRegistry()
    registry.register(ProcessCollector(namespace=METRICS_NAMESPACE))
    registry.register(EngineCollector(lambda: engine))
    server, _ = start_http_server(0, addr=host, registry=registry)
    return server


async def serve(settings: Settings, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    engine = Engine(settings, settings.redis_url or "")
    await engine.start()
    metrics = _start_metrics(engine, "127.0.0.1") if settings.worker_metrics_port else None
    try:
        write_frame(writer, Ready(len(engine.catalogue.current), metrics.server_port if metrics else None))
        await writer.drain()
        await _answer_batches(reader, writer, LocalApply(engine.applier))
    except (asyncio.IncompleteReadError, ConnectionError):
        log.info("applier process stopping: its consumer closed the socket (a batch not answered is "
                 "delivered again)")
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        writer.close()
        await engine.stop()


async def _answer_batches(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, apply: LocalApply) -> None:
    """Until the consumer closes the socket, which ends this at once, even mid-batch."""
    pending: asyncio.Future[Any] = asyncio.ensure_future(read_frame(reader))
    applying: asyncio.Future[Any] | None = None
    try:
        while True:
            records = await pending
            pending = asyncio.ensure_future(read_frame(reader))
            applying = asyncio.ensure_future(apply(records))
            await asyncio.wait((applying, pending), return_when=asyncio.FIRST_COMPLETED)
            if pending.done() and pending.exception() is not None:
                await pending  # raises: the consumer is gone
            write_frame(writer, await applying)
            applying = None
            await writer.drain()
    finally:
        for task in (pending, applying):
            if task is not None:
                task.cancel()


def main() -> None:
    fd, loglevel = int(sys.argv[1]), sys.argv[2]
    for ours_to_decide in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ours_to_decide, signal.SIG_IGN)
    settings = Settings()  # the worker's: its shop's, when it works for one
    work_for(settings.tenant)
    logs.configure(settings.log_format, logging.getLevelName(loglevel.upper()))
    uvloop.run(serve(settings, socket.socket(fileno=fd)))


if __name__ == "__main__":
    main()
