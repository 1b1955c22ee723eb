"""Connection limits of the real server (``run_api``: uvicorn, uvloop, httptools) on loopback:
idle, silent, trickling, oversized and surplus connections are all closed or refused in time."""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from app.embedded import free_port
from app.server import BoundedHttpToolsProtocol, uvicorn_config_kwargs
from app.settings import Settings
from tests.conftest import TEST_SECRET_KEY, make_settings

HEADER_TIMEOUT_S = 1.0
KEEPALIVE_S = 2  # longer than the header timeout, which must not cut it short
MAX_CONNECTIONS = 4
MAX_HEADER_BYTES = 4096
# Scheduling and loopback latency on a loaded machine; far below any limit's default.
SLACK_S = 2.0

GET_LIVE = b"GET /health/live HTTP/1.1\r\nHost: hirehook.test\r\n\r\n"


@pytest.fixture(scope="module")
def port(settings: Settings) -> Iterator[int]:
    """The port of an API process started by ``run_api`` with short limits."""
    port = free_port()
    env = {
        **os.environ,
        "HIREHOOK_ENVIRONMENT": "test",
        "HIREHOOK_DATABASE_URL": str(settings.database_url),
        "HIREHOOK_REDIS_URL": str(settings.redis_url),
        "HIREHOOK_SECRET_KEY": TEST_SECRET_KEY,
        "HIREHOOK_LOG_FORMAT": "console",
        "HIREHOOK_API_PORT": str(port),
        "HIREHOOK_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "HIREHOOK_API_KEEPALIVE_S": str(KEEPALIVE_S),
        "HIREHOOK_API_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "HIREHOOK_API_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    }
    code = "from app.server import run_api; from app.settings import Settings; run_api(Settings())"
    api = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("the API did not start")
        yield port
    finally:
        api.terminate()
        try:
            api.wait(15)
        except subprocess.TimeoutExpired:
            api.kill()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def trickle(sock: socket.socket, data: bytes, every_s: float = 0.2) -> None:
    """Send ``data`` a byte at a time until the server answers or hangs up."""
    for byte in data:
        sock.sendall(bytes([byte]))
        readable, _, _ = select.select([sock], [], [], every_s)
        if readable:
            return


def wait_closed(sock: socket.socket, since: float, within_s: float) -> tuple[bytes, float]:
    """What the server sent before closing, and when it closed (seconds after ``since``)."""
    received = b""
    deadline = since + within_s
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open {within_s} s later; received {received!r}")
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return received, time.monotonic() - since
        received += chunk


def get_live(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code


def test_config_bounds_every_connection() -> None:
    settings = make_settings("postgresql://h@127.0.0.1/h", "redis://127.0.0.1/0")
    kwargs = uvicorn_config_kwargs(settings)
    assert kwargs["timeout_keep_alive"] == settings.api_keepalive_s
    assert kwargs["limit_concurrency"] == settings.api_max_connections + 1
    assert kwargs["backlog"] == settings.api_backlog
    assert kwargs["timeout_graceful_shutdown"] == settings.api_shutdown_timeout_s
    protocol = kwargs["http"]
    assert protocol.func is BoundedHttpToolsProtocol
    assert protocol.keywords == {
        "header_timeout_s": settings.api_header_timeout_s,
        "max_header_bytes": settings.api_max_header_bytes,
    }
    # With workers > 1 uvicorn pickles its config into each spawned process.
    config = pickle.loads(pickle.dumps(uvicorn.Config(**kwargs)))  # noqa: S301 - our own bytes
    assert config.http.keywords == protocol.keywords


def test_silent_connection_is_dropped(port: int) -> None:
    with connect(port) as silent:
        opened = time.monotonic()
        assert get_live(port) == 200  # others are served meanwhile
        received, after = wait_closed(silent, opened, HEADER_TIMEOUT_S + SLACK_S)
    assert received == b""
    assert after >= HEADER_TIMEOUT_S / 2


def test_trickled_request_line_is_timed_out(port: int) -> None:
    with connect(port) as slow:
        opened = time.monotonic()
        trickle(slow, b"GET /health/live HTTP/1.1\r\nHost: hirehook.test\r\n")
        assert get_live(port) == 200
        received, after = wait_closed(slow, opened, HEADER_TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert after >= HEADER_TIMEOUT_S / 2


def test_idle_keep_alive_connection_is_closed(port: int) -> None:
    with connect(port) as idle:
        idle.sendall(GET_LIVE)
        assert read_response(idle).startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        received, after = wait_closed(idle, answered, KEEPALIVE_S + SLACK_S)
    assert received == b""
    assert after >= KEEPALIVE_S * 0.75


def test_trickled_next_request_is_timed_out(port: int) -> None:
    # uvicorn's keep-alive timer stops at the first byte of the next request; the header
    # clock starts there.
    with connect(port) as slow:
        slow.sendall(GET_LIVE)
        assert read_response(slow).startswith(b"HTTP/1.1 200 ")
        begun = time.monotonic()
        trickle(slow, GET_LIVE[:-2])
        received, after = wait_closed(slow, begun, HEADER_TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert after >= HEADER_TIMEOUT_S / 2


def test_oversized_headers_are_refused(port: int) -> None:
    filler = b"x-filler: " + b"a" * 1000 + b"\r\n"
    with connect(port) as fits:
        fits.sendall(GET_LIVE[:-2] + filler * 2 + b"\r\n")
        assert read_response(fits).startswith(b"HTTP/1.1 200 ")
    with connect(port) as large:
        sent = time.monotonic()
        large.sendall(GET_LIVE[:-2] + filler * 5)  # never finished, but too long already
        received, _ = wait_closed(large, sent, SLACK_S)
    assert received.startswith(b"HTTP/1.1 431 ")


def test_connections_beyond_the_cap_get_503(port: int) -> None:
    # Requests whose body is late: each holds a connection and a running request.
    late = (
        b"POST /oauth/token HTTP/1.1\r\nHost: hirehook.test\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\n"
    )
    holders = [connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        for holder in holders:
            holder.sendall(late)
        readable, _, _ = select.select(holders, [], [], 0.3)
        assert readable == [], "a request within the cap was answered before its body came"
        with connect(port) as extra:
            extra.sendall(GET_LIVE)
            assert read_response(extra).startswith(b"HTTP/1.1 503 ")
        for holder in holders:
            holder.sendall(b"late")
            assert read_response(holder).startswith(b"HTTP/1.1 400 ")  # not a form
    finally:
        for holder in holders:
            holder.close()
    deadline = time.monotonic() + SLACK_S
    while get_live(port) != 200:
        assert time.monotonic() < deadline, "still refusing after the connections closed"
        time.sleep(0.05)
