"""The shared HTTP client's transport (app/clients/http.py: httpx over aiohttp's pool): the
errors httpx callers classify, kept-alive connections the server closed while idle, the
connection limit, uvloop, and no cookie kept between calls."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import uvloop

from app.clients.http import PolicyTransport, send_once
from app.services import Services

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request and never answers."""
    await reader.read()
    writer.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(0.5), mounts={"all://": PolicyTransport(limits=LIMITS)}
    ) as http:
        yield http


async def test_keeps_connections_alive_and_replaces_ones_the_server_closed(
    client: httpx.AsyncClient,
) -> None:
    connections = 0

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        # Two requests on one connection, then the server closes it while it is idle.
        for _ in range(2):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server, url = await _serve(answer_then_close)
    async with server:
        for _ in range(2):
            assert (await client.get(url)).json() == {}
        await asyncio.sleep(0.05)  # the close reaches the client while the connection idles
        assert (await client.get(url)).json() == {}
    assert connections == 2


async def test_never_more_connections_than_the_limit() -> None:
    open_now = peak = 0
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            while True:
                try:
                    await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        finally:
            open_now -= 1
            writer.close()

    server, url = await _serve(slow)
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with server, httpx.AsyncClient(mounts={"all://": PolicyTransport(limits=limits)}) as http:
        calls = [asyncio.create_task(http.get(url)) for _ in range(5)]
        await asyncio.sleep(0.3)
        release.set()
        answers = await asyncio.gather(*calls)
    assert [a.json() for a in answers] == [{}] * 5
    assert peak == 2


async def test_a_server_that_never_answers_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    server, url = await _serve(_silent)
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_a_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")


async def test_a_connection_closed_before_the_answer_is_not_a_timeout(
    client: httpx.AsyncClient,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    server, url = await _serve(hang_up)
    async with server:
        with pytest.raises(httpx.TransportError) as caught:
            await client.get(url)
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_a_connection_cut_mid_response_is_a_read_error(
    client: httpx.AsyncClient,
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
        await writer.drain()
        writer.transport.abort()

    server, url = await _serve(cut)
    async with server:
        with pytest.raises(httpx.ReadError):
            await client.get(url)


def test_works_on_uvloop() -> None:
    # Workers and the API run on uvloop.
    async def round_trip() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server, url = await _serve(answer)
        async with (
            server,
            httpx.AsyncClient(mounts={"all://": PolicyTransport(limits=LIMITS)}) as http,
        ):
            assert (await http.get(url)).json() == {}

    uvloop.run(round_trip())


async def test_the_shared_client_keeps_no_cookie_between_calls(services: Services) -> None:
    """One client serves every tenant: a cookie set by one tenant's ATS host must not be sent
    on the next call to that host, which may be another tenant's (neither by httpx nor by
    aiohttp's session underneath)."""
    seen: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            cookie = [
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"cookie:")
            ]
            seen.append(cookie[0] if cookie else "")
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=tenant-a; Path=/\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
            await writer.drain()
        writer.close()

    server, base = await _serve(handler)
    try:
        for _ in range(2):
            response = await services.http.get(f"{base}/v1/candidates")
            assert response.status_code == 200
    finally:
        server.close()
        await server.wait_closed()
    assert seen == ["", ""]
    assert not services.http.cookies


async def test_send_once_sends_the_request_as_given_and_reads_the_answer(
    client: httpx.AsyncClient,
) -> None:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        seen.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 410 Gone\r\nretry-after: 7\r\ncontent-length: 4\r\n\r\ngone")
        await writer.drain()
        await reader.read()
        writer.close()

    server, url = await _serve(echo)
    async with server:
        answer = await send_once(
            client,
            "POST",
            httpx.URL(url + "/hooks?a=%2C"),
            content=b'{"n":1}',
            headers={"webhook-id": "msg_1", "content-type": "application/json"},
            timeouts=httpx.Timeout(0.5),
        )
    assert (answer.status_code, answer.headers["Retry-After"], answer.content) == (
        410,
        "7",
        b"gone",
    )
    [request] = seen
    # The URL as httpx encoded it, the headers given, the body as is; nothing redirected.
    assert request.startswith(b"POST /hooks?a=%2C HTTP/1.1\r\n")
    assert b"\r\nwebhook-id: msg_1\r\n" in request.lower()
    assert request.endswith(b'\r\n\r\n{"n":1}')


async def test_send_once_gets_with_the_clients_headers_and_decodes_a_gzipped_answer() -> None:
    """An ATS call: the query merged into the URL's own, the client's user-agent unless the
    call names one, and a body the ATS compressed read decoded, with the time it took."""
    seen: list[bytes] = []
    body = b'{"id": "c1"}'

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        packed = gzip.compress(body)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
            + b"content-length: %d\r\n\r\n" % len(packed)
            + packed
        )
        await writer.drain()
        await reader.read()
        writer.close()

    server, url = await _serve(gzipped)
    async with (
        server,
        httpx.AsyncClient(
            timeout=httpx.Timeout(0.5),
            headers={"user-agent": "Hirehook/test"},
            mounts={"all://": PolicyTransport(limits=LIMITS)},
        ) as http,
    ):
        answer = await send_once(
            http,
            "GET",
            url + "/Candidates/1?fields=a%2Cb",
            headers={"Accept": "application/json", "Authorization": "Bearer t"},
            params={"page": "2"},
        )
    assert (answer.status_code, answer.json(), answer.is_success) == (200, {"id": "c1"}, True)
    assert 0 < answer.elapsed_s < 0.5
    [head] = seen
    lines = head.decode().lower().split("\r\n")
    assert lines[0] == "get /candidates/1?fields=a%2cb&page=2 http/1.1"
    assert "user-agent: hirehook/test" in lines
    assert "accept: application/json" in lines
    assert "authorization: bearer t" in lines
    # Offered by the transport, which decodes what it offers: gzip at least.
    [offered] = [line for line in lines if line.startswith("accept-encoding:")]
    assert "gzip" in offered


async def test_send_once_keeps_the_transports_errors_and_timeouts(
    client: httpx.AsyncClient,
) -> None:
    server, url = await _serve(_silent)
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await send_once(
                client,
                "POST",
                httpx.URL(url),
                content=b"{}",
                headers={},
                timeouts=httpx.Timeout(0.2),
            )
    with pytest.raises(httpx.ConnectError):
        await send_once(
            client,
            "POST",
            httpx.URL("http://127.0.0.1:1/"),
            content=b"{}",
            headers={},
            timeouts=httpx.Timeout(0.2),
        )


async def test_send_once_through_another_transport_goes_through_httpx_request() -> None:
    """A URL the client sends elsewhere (a proxy from the environment is another transport)
    still gets the request as given."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, headers={"retry-after": "2"}, content=b"busy")

    async with httpx.AsyncClient(mounts={"all://": httpx.MockTransport(answer)}) as other:
        got = await send_once(
            other,
            "POST",
            httpx.URL("https://hooks.vendor.example/in"),
            content=b"{}",
            headers={"webhook-id": "msg_2"},
            timeouts=httpx.Timeout(0.5),
        )
    assert (got.status_code, got.headers["retry-after"], got.content, got.is_success) == (
        503,
        "2",
        b"busy",
        False,
    )
    [request] = seen
    assert (request.method, str(request.url), request.headers["webhook-id"]) == (
        "POST",
        "https://hooks.vendor.example/in",
        "msg_2",
    )
    assert request.extensions["timeout"]["read"] == 0.5
