"""Slow, silent and oversized clients over real sockets (api.server): a head or body that does not
arrive in time gets a 408 and its connection closed, an oversized head a 431, a client leaving
mid-body is no error, and many half-open connections do not stop ``/health`` from answering."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from api.app import create_app
from engine.store.server import free_port
from tests.conftest import LiveServer, make_settings
from tests.redis_clients import redis_environment

ROOT = Path(__file__).resolve().parents[2]
SLOW = {"header_timeout_s": 1.0, "body_timeout_s": 1.0, "max_header_bytes": 2048}


@pytest.fixture
def server(data_dir: Path, redis_url: str) -> Iterator[LiveServer]:
    with LiveServer(create_app(make_settings(data_dir, redis_url, **SLOW))) as live:
        yield live


@pytest.fixture
def server_errors(server: LiveServer, caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of uvicorn's error logger (which does not propagate to the root) and of the app's."""
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="api.app"):
            yield caplog
    finally:
        uvicorn_error.removeHandler(caplog.handler)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket timeout fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


def test_a_head_that_stops_coming_gets_408_and_the_connection_closed(server: LiveServer) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, headers, body = parse(read_until_closed(sock))
    assert status == 408 and headers["connection"] == "close"
    assert body == {"error": "request head not received within 1 s",
                    "errors": [{"field": "headers", "message": "must arrive within 1 s"}]}


def test_a_connection_that_never_asks_is_closed_without_an_answer(server: LiveServer) -> None:
    with connect(server.port) as sock:
        assert read_until_closed(sock) == b""


def test_a_kept_alive_connection_is_timed_from_its_next_requests_first_byte(server: LiveServer) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # and no more
        status, _, body = parse(read_until_closed(sock))
    assert status == 408 and body["errors"][0]["field"] == "headers"


def test_a_body_that_stops_coming_gets_408_and_nothing_is_logged_as_an_error(
        server: LiveServer, server_errors: pytest.LogCaptureFixture) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"event_id\": ")
        status, headers, body = parse(read_until_closed(sock))
    assert status == 408 and headers["connection"] == "close"
    assert body["errors"] == [{"field": "body", "message": "must arrive within 1 s of the headers"}]
    wait_for(lambda: any("client disconnected" in r.getMessage() for r in server_errors.records))
    assert not [r for r in server_errors.records if r.levelno >= logging.WARNING]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_client_leaving_mid_body_is_logged_at_debug_not_as_an_error(
        server: LiveServer, server_errors: pytest.LogCaptureFixture) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n" + b"[" * 1000)
    wait_for(lambda: any("client disconnected" in r.getMessage() for r in server_errors.records))
    gone = [r for r in server_errors.records if "client disconnected" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.DEBUG]
    assert not [r for r in server_errors.records if r.levelno >= logging.WARNING]


def test_a_body_sent_in_pieces_within_the_timeout_is_served(server: LiveServer) -> None:
    event = orjson.dumps({"event_id": "pieces", "type": "page_view", "visitor_id": "slowish"})
    with connect(server.port) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(event)).encode() + b"\r\n\r\n" + event[:10])
        sock.sendall(event[10:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_a_head_larger_than_the_limit_is_431(server: LiveServer) -> None:
    for head in (b"GET /health HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 3000 + b"\r\n\r\n",  # in one read
                 b"GET /health?" + b"q" * 3000):  # still coming
        with connect(server.port) as sock:
            sock.sendall(head)
            status, headers, body = parse(read_until_closed(sock))
        assert status == 431 and headers["connection"] == "close"
        assert body["errors"] == [{"field": "headers",
                                   "message": "the request line and headers must fit in 2048 bytes"}]
    big_body = b'{"events": [' + b",".join([b'{"event_id": "e%d", "type": "page_view", "visitor_id": "v"}' % n
                                             for n in range(100)]) + b"]}"
    assert len(big_body) > 2048  # a body is not a head
    assert httpx.post(f"{server.url}/v1/events", content=big_body,
                      headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("192.0.2.1", False)])
def test_a_trusted_proxy_gives_the_scheme_and_the_client_address(data_dir: Path, redis_url: str,
                                                                  trusted: str, secure: bool) -> None:
    settings = make_settings(data_dir, redis_url, forwarded_allow_ips=trusted, rate_limits=True,
                             rate_limit_address="2/minute")
    with LiveServer(create_app(settings)) as live, httpx.Client(base_url=live.url) as http:
        def get(client: str) -> httpx.Response:
            return http.get("/v1/recommendations?placement=popular",
                            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": client})

        cookie = get("203.0.113.1").headers["set-cookie"]
        assert ("Secure" in cookie) is secure
        http.cookies.clear()
        assert get("203.0.113.1").status_code == 200
        # Behind a trusted proxy each client has its own limit; else they all count as the proxy.
        assert get("203.0.113.2").status_code == (200 if secure else 429)


def wait_for(condition, timeout_s: float = 15) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


# ------------------------------------------------------------------------------- a real `vitrine serve`


HALF_OPEN = 1100


def test_health_answers_while_more_half_open_connections_than_the_usual_file_limit_exist(
        tmp_path: Path, redis_url: str) -> None:
    """`vitrine serve` started under a soft open-files limit of 1,024 (the usual default) raises
    it to the hard limit, in its two workers too; each holds its share of 1,100 connections
    that sent half a head, and /health still answers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * HALF_OPEN + 200  # this process holds the client ends
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-files limit ({hard}) is below {needed}")
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINE_")}
    env.update({"VITRINE_DATA_DIR": str(tmp_path), **redis_environment(redis_url), "VITRINE_PORT": str(port),
                "VITRINE_WORKERS": "2", "VITRINE_HEADER_TIMEOUT_S": "120", "VITRINE_MAX_HEADER_BYTES": "4096"})
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    sockets: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 240
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"vitrine serve did not start: {proc.communicate()[0][-3000:]}")
            time.sleep(0.2)
        for _ in range(HALF_OPEN):
            sock = connect(port)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        workers = psutil.Process(proc.pid).children()
        wait_for(lambda: sum(_established(w, port) for w in workers) >= HALF_OPEN)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        with connect(port) as sock:  # the head limit holds in the spawned workers
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 5000 + b"\r\n\r\n")
            assert parse(read_until_closed(sock))[0] == 431
    finally:
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(timeout=60)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _established(process: psutil.Process, port: int) -> int:
    try:
        return sum(1 for c in process.net_connections("tcp") if c.laddr.port == port and c.status == "ESTABLISHED")
    except psutil.Error:
        return 0
