"""A real webhook receiver on 127.0.0.1 for the trigger tests: verifies each signature, records
the documents, and fails the first ``fail_first`` requests (or all) on purpose."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from engine.triggers.webhook import HEADER, verify


class Receiver:
    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.received: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.requests = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.requests += 1
                    failing = outer.requests <= outer.fail_first
                    if not verify(outer.secret, self.headers.get(HEADER, ""), body, time.time()):
                        outer.bad_signatures += 1
                        status = 401
                    elif failing:
                        status = 503
                    else:
                        outer.received.append(orjson.loads(body))
                        outer.keys.append(self.headers["Idempotency-Key"])
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
