"""How Vitrine runs uvicorn: the limits on slow and oversized requests that uvicorn lacks, and the
process's open-files limit.

uvicorn (httptools) holds a connection that never finishes its head, or its body, for as long as
the client likes, and reads a head of any size: a thousand such clients use up the usual 1,024
open files and the server stops accepting, ``/health`` included. Its only timeout is keep-alive,
between requests. ``GuardedHttpToolsProtocol`` adds a deadline for each request's head and one for
its body, and a head size limit, at the protocol level: the ASGI app cannot see a half-sent head,
and an app that answered early does not read the rest of a body that keeps the connection busy.
A request that fits in one read (nearly all) arms no timer at all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.responses import HEADERS_TOO_LARGE, REQUEST_TIMEOUT, error_body
from engine.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline (from the connection's opening, or from a
    kept-alive request's first byte), a body deadline (from the end of the head) and a head size
    limit. Past one: the error shape with 408 or 431, and the connection closed."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._in_head = True  # what arrives is (the start of) a request head
        self._in_body = False  # a head is in, its body is not
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self._limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes and self._head_too_large(data):
                self._unset_keepalive_if_required()
                limit = self._limits.max_header_bytes
                self._refuse(HEADERS_TOO_LARGE, f"request head larger than {limit} bytes", "headers",
                             f"the request line and headers must fit in {limit} bytes")
                return
        super().data_received(data)
        if self._deadline is None and not self.transport.is_closing():
            if self._in_head and self._head_bytes:
                self._deadline = self.loop.call_later(self._limits.header_timeout_s, self._head_timed_out)
            elif self._in_body:
                self._deadline = self.loop.call_later(self._limits.body_timeout_s, self._body_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body = False, True
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._in_body, self._head_bytes = True, False, 0
        self._disarm()
        super().on_message_complete()

    def _head_too_large(self, data: bytes) -> bool:
        """The head's exact size when this read holds its end (a body may follow it)."""
        end = data.find(b"\r\n\r\n")
        size = self._head_bytes - len(data) + (end + 4 if end >= 0 else len(data))
        return size > self._limits.max_header_bytes

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0 or (self.cycle is not None and not self.cycle.response_complete):
            self.transport.close()  # nothing asked (an idle connection), or an answer is on its way
            return
        seconds = self._limits.header_timeout_s
        self._refuse(REQUEST_TIMEOUT, f"request head not received within {seconds:g} s", "headers",
                     f"must arrive within {seconds:g} s")

    def _body_timed_out(self) -> None:
        """The app may be waiting for the body: it sees a disconnect (api.app answers nothing to
        it), and the client gets the 408 unless the app had started answering."""
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        started = cycle.response_started
        cycle.response_started = cycle.response_complete = cycle.disconnected = True
        cycle.message_event.set()
        if started:
            self.transport.close()
            return
        seconds = self._limits.body_timeout_s
        self._refuse(REQUEST_TIMEOUT, f"request body not received within {seconds:g} s", "body",
                     f"must arrive within {seconds:g} s of the headers")

    def _refuse(self, status: int, message: str, field: str, detail: str) -> None:
        log.debug("%s from a client: %s", status, message)
        body = error_body(message, [{"field": field, "message": detail}])
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n", body]))
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that carry Vitrine's HTTP settings (for `vitrine serve` and the tests'
    live servers alike). The protocol is a partial of a module-level class: it pickles, so it
    reaches the worker processes uvicorn spawns."""
    limits = HttpLimits(header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
                        max_header_bytes=settings.max_header_bytes)
    return {"http": functools.partial(GuardedHttpToolsProtocol, limits=limits),
            "timeout_keep_alive": settings.keep_alive_timeout_s,
            "proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}


def raise_open_files_limit() -> int:
    """The soft limit on open files raised to the hard one (every connection is a file; the usual
    soft limit, 1,024, is a thousand clients); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in ([hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16]):
        if soft >= target:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
