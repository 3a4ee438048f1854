"""The consumer <-> applier wire: one pickled object per frame, after its length (4 bytes, big
endian). Both ends are this code base's own processes (a parent and the child it spawned over a
private socket pair), so pickle carries the records and results as they are."""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class Ready:
    """The applier's first frame: its engine is up. Then each batch of records (a list of
    ``streaming.processor.Record``) is answered by its ``BatchResult``."""
    items: int  # in the catalogue it loaded
    metrics_port: int | None  # where its own families are served (the consumer re-exports them)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next object; ``asyncio.IncompleteReadError`` once the other end is gone."""
    size, = HEADER.unpack(await reader.readexactly(HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def write_frame(writer: asyncio.StreamWriter, value: Any) -> None:
    """Queued on the transport; the caller awaits ``writer.drain()``. ``ConnectionResetError`` once
    the transport closes because the other end is gone (uvloop's transports would raise
    ``RuntimeError`` there, asyncio's drop the write), before either end's read has noticed."""
    if writer.transport.is_closing():
        raise ConnectionResetError("the other end closed the socket")
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(HEADER.pack(len(body)) + body)
