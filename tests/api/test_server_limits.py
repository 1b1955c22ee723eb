"""Connection limits of the real server (``run_api``: uvicorn, uvloop, httptools) on loopback:
idle, silent, trickling, oversized and surplus connections are all closed or refused in time,
and a refusal sent before the body was read reaches a client that writes the body first."""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import psutil
import pytest
import uvicorn

from app.admin import keys
from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.server import BoundedHttpToolsProtocol, uvicorn_config_kwargs
from app.services import Services
from tests.support.app import TEST_SECRET_KEY, make_settings

HEADER_TIMEOUT_S = 1.0
KEEPALIVE_S = 2  # longer than the header timeout, which must not cut it short
MAX_CONNECTIONS = 4
MAX_HEADER_BYTES = 4096
# Scheduling and loopback latency on a loaded machine; far below any limit's default.
SLACK_S = 2.0
MIB = 1024 * 1024
LINGER_S = 2.0
LINGER_BYTES = 64 * MIB
# Over the default 1 MiB body cap, under the linger bound.
OVER_CAP = 3 * MIB

GET_LIVE = b"GET /health/live HTTP/1.1\r\nHost: hirehook.test\r\n\r\n"


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[tuple[int, int]]:
    """The port and process id of an API process started by ``run_api`` with short limits."""
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
        "HIREHOOK_API_LINGER_S": str(LINGER_S),
        "HIREHOOK_API_LINGER_BYTES": str(LINGER_BYTES),
    }
    code = (
        "from app.server import run_api; from app.platform.settings import Settings; "
        "run_api(Settings())"
    )
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
        yield port, api.pid
    finally:
        api.terminate()
        try:
            api.wait(15)
        except subprocess.TimeoutExpired:
            api.kill()


@pytest.fixture(scope="module")
def port(api: tuple[int, int]) -> int:
    return api[0]


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
        "linger_s": settings.api_linger_s,
        "linger_bytes": settings.api_linger_bytes,
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


# --- Refusals before the body is read --------------------------------------------------------


def test_a_webhook_refusal_of_a_body_over_the_cap_reaches_a_client_that_sends_it_all(
    port: int,
) -> None:
    """httpx, like requests and many Java clients, writes the whole body before it reads: the
    413 sent after the headers must still be there to read, not lost to a reset."""
    body = b"[" + b" " * OVER_CAP + b"]"
    json = {"content-type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        keldair = client.post("/v1/keldair/acme/events", content=body, headers=json)
        assert keldair.status_code == 413, keldair.text[:200]
        assert keldair.json()["error"]["code"] == "payload_too_large"
        # iCIMS's own shape (its standard has no 413: a 400 that says why), on a connection
        # the answer kept alive: the unread body is not taken for the next request.
        icims = client.post("/v1/icims/events", content=body, headers=json)
        assert icims.status_code == 400, icims.text[:200]
        assert "larger than this endpoint accepts" in icims.json()["error"]["debugErrorMessage"]
        token = client.post("/oauth/token", content=body, headers=json)
        assert token.status_code == 413 and token.json()["error"] == "invalid_request"
        assert client.get("/health/live").status_code == 200


def test_a_raw_client_writing_the_whole_body_first_reads_the_413(port: int) -> None:
    # More than the sockets' buffers hold, under the linger bound.
    body = b"[" + b" " * (16 * MIB) + b"]"
    head = (
        b"POST /v1/keldair/acme/events HTTP/1.1\r\nHost: hirehook.test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(port) as sock:
        sock.settimeout(30)
        sock.sendall(head + body)
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b'"payload_too_large"' in answer
        # Then the server closes, cleanly: all of the body was read.
        rest, _ = wait_closed(sock, time.monotonic(), LINGER_S + SLACK_S)
    assert rest == b""


async def test_admin_and_console_refusals_of_a_body_over_the_cap_are_readable(
    port: int, services: Services
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    padding = " " * OVER_CAP
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        admin = await client.post(
            "/v1/admin/tenants",
            content=b'{"slug": "acme", "name": "' + padding.encode() + b'"}',
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        assert admin.status_code == 413, admin.text[:200]
        error = admin.json()["error"]
        assert error["code"] == "payload_too_large" and "bytes" in error["message"]

        # Chunked, with no length declared: refused once the body passes the cap.
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"slug": "acme", "name": "'
            for _ in range(OVER_CAP // (256 * 1024)):
                yield b" " * (256 * 1024)
            yield b'"}'

        chunked = await client.post(
            "/v1/admin/tenants",
            content=chunks(),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        assert chunked.status_code == 413, chunked.text[:200]
        assert chunked.json()["error"]["code"] == "payload_too_large"

        console = await client.post(
            "/console/login",
            data={"key": padding, "csrf": "x"},
            follow_redirects=False,
        )
        assert console.status_code == 413, console.text[:200]
        assert "text/html" in console.headers["content-type"]
        assert "larger than this endpoint accepts" in console.text


def test_a_client_that_never_stops_sending_is_cut_off_and_nothing_is_kept(
    api: tuple[int, int],
) -> None:
    """Lingering is bounded in time and bytes, and what it reads is thrown away."""
    port, pid = api
    process = psutil.Process(pid)
    head = (
        b"POST /v1/keldair/acme/events HTTP/1.1\r\nHost: hirehook.test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (1024 * MIB)
    )
    chunk = b" " * (256 * 1024)
    before = process.memory_info().rss
    sent = 0
    with connect(port) as sock:
        sock.sendall(head)
        started = time.monotonic()
        with pytest.raises(OSError):  # a reset, or a broken pipe
            while time.monotonic() - started < LINGER_S + 4 * SLACK_S:
                sock.sendall(chunk)
                sent += len(chunk)
        took = time.monotonic() - started
    # Cut off by whichever bound came first, with room for the sockets' own buffers.
    assert took < LINGER_S + 4 * SLACK_S
    assert sent <= LINGER_BYTES + 32 * MIB
    # The server read all that and kept none of it.
    assert sent > 8 * MIB
    assert process.memory_info().rss - before < 8 * MIB
