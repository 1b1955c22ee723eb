"""httpx's connection pool on plain asyncio streams instead of anyio's.

httpcore's default backend goes through anyio for every read, write and pool check: a cancel
scope per read and write, and, on every request, a typed-attribute lookup per pooled
connection to ask whether its socket became readable. With twenty calls in flight that
bookkeeping cost more than the rest of the request; on asyncio streams the same questions are
attribute reads. Everything above the network (httpx's client, httpcore's pool and HTTP/1.1,
their timeouts and exception classes) is unchanged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from app.platform import outbound


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection as an asyncio reader/writer pair (httpcore's interface names the
    ``timeout`` parameters)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """Up to ``max_bytes``; ``b""`` once the server has closed."""
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """All of ``buffer``, waiting while the socket's send buffer is full."""
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        """Close, as anyio does: one pass of the loop to flush, then abort, so a TLS peer that
        never answers the close does not hold up the request whose pool check dropped it."""
        transport = self._writer.transport
        if transport.is_closing():
            return
        self._writer.close()
        await asyncio.sleep(0)
        transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        """This connection upgraded to TLS, in place."""
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # ssl.SSLError included
            self._writer.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        """What httpcore and httpx ask of a stream; ``is_readable`` is how the pool finds an
        idle connection the server has closed (the loop has already read its EOF)."""
        if info == "is_readable":
            return (
                self._reader.at_eof()
                or self._reader.exception() is not None
                or self._writer.transport.is_closing()
            )
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections, only to addresses the outbound policy
    (app/platform/outbound.py) accepts."""

    def __init__(self, policy: outbound.OutboundPolicy | None = None) -> None:
        # None: the process's policy at the time of each connection.
        self._policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A TCP connection (asyncio sets TCP_NODELAY) to the first address of ``host`` that
        answers, every address checked first: the address checked is the one connected to,
        so a name re-pointed between the check and the connection cannot slip through."""
        policy = self._policy or outbound.policy()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                addresses = [str(info[4][0]) for info in infos]
                for address in addresses:
                    policy.check_resolved(host, ipaddress.ip_address(address.split("%")[0]))
                failure: OSError = OSError(f"{host} has no address")
                for address in dict.fromkeys(addresses):
                    try:
                        # No happy_eyeballs_delay: uvloop, which workers run on, does not
                        # take it; the addresses are tried in the resolver's order instead.
                        reader, writer = await asyncio.open_connection(
                            address, port, local_addr=local
                        )
                    except OSError as exc:
                        failure = exc
                        continue
                    return _with_options(reader, writer, socket_options)
                raise failure
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ValueError) as exc:  # outbound.OutboundRefusedError included
            raise httpcore.ConnectError(str(exc)) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to a Unix socket."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _with_options(reader, writer, socket_options)

    async def sleep(self, seconds: float) -> None:
        """Between connection retries."""
        await asyncio.sleep(seconds)


def _with_options(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    socket_options: Iterable[Any] | None,
) -> AsyncioStream:
    sock = writer.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(reader, writer)


class _Pool(httpcore.AsyncConnectionPool):
    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        """httpcore's assignment, in one pass over the pool, never handing a connection to a
        second request before the first has started on it.

        httpcore runs this whenever a request is queued and whenever a response is closed.
        An HTTP/1.1 connection stays idle from its assignment until its request starts, so
        httpcore gave the same idle connection to every request queued meanwhile: all but one
        then failed with ConnectionNotAvailable and went round the pool again (two and a half
        extra rounds per request with twenty calls in flight), each round counting the whole
        pool once per connection. Here a connection held by a request is not offered to
        another (this pool speaks HTTP/1.1 only, one request per connection at a time), and
        the keep-alive limit counts idle connections, as documented (httpcore counted all of
        them, so a busy pool closed each connection as soon as it was idle).
        """
        held = {id(r.connection) for r in self._requests if r.connection is not None}
        closing = self._prune(held)
        kept = self._connections
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            connection = next(
                (
                    c
                    for c in kept
                    if id(c) not in held and c.can_handle_request(origin) and c.is_available()
                ),
                None,
            )
            if connection is None:
                if len(kept) >= self._max_connections:
                    spare = next((c for c in kept if id(c) not in held and c.is_idle()), None)
                    if spare is None:
                        continue
                    kept.remove(spare)
                    closing.append(spare)
                connection = self.create_connection(origin)
                kept.append(connection)
            held.add(id(connection))
            pool_request.assign_to_connection(connection)
        return closing

    def _prune(self, held: set[int]) -> list[httpcore.AsyncConnectionInterface]:
        """Drop closed connections; the expired ones and the idle ones beyond the keep-alive
        limit (oldest first, none a request holds) are returned, to be closed."""
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept: list[httpcore.AsyncConnectionInterface] = []
        surplus = -self._max_keepalive_connections
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.has_expired():
                closing.append(connection)
                continue
            kept.append(connection)
            surplus += connection.is_idle()
        if surplus > 0:
            trimmed = []
            for connection in kept:
                if surplus > 0 and id(connection) not in held and connection.is_idle():
                    surplus -= 1
                    closing.append(connection)
                else:
                    trimmed.append(connection)
            kept = trimmed
        self._connections = kept
        return closing

    async def _close_connections(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        # httpcore enters an anyio shielded cancel scope to close the connections it dropped,
        # twice per request and almost always for none; only enter it when there are some.
        if closing:
            await super()._close_connections(closing)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (exception mapping, streaming, proxies from the client) with its
    direct connection pool on :class:`AsyncioBackend`; every request's URL (a redirect's
    included) is checked against the outbound policy before it is sent."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
        policy: outbound.OutboundPolicy | None = None,
    ) -> None:
        context = httpx.create_ssl_context(verify=verify)
        super().__init__(limits=limits, verify=context)
        self._policy = policy
        # httpx builds its pool without a way to name the backend; this is the same pool
        # with the same settings and another backend.
        self._pool = _Pool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The request sent, unless the outbound policy refuses its URL (a row stored before
        the policy, a URL an ATS's answer named): then ``httpx.ConnectError``."""
        try:
            (self._policy or outbound.policy()).check(str(request.url))
        except outbound.OutboundRefusedError as exc:
            raise httpx.ConnectError(
                f"refused by the outbound policy: {exc}", request=request
            ) from None
        return await super().handle_async_request(request)


class _NoCookies(httpx.Cookies):
    """A cookie store that never keeps one."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Nothing is kept, so nothing is parsed (httpx builds a urllib request per response
        to hand the headers to a cookie jar, even one whose policy refuses everything)."""
        del response


class OutboundClient(httpx.AsyncClient):
    """httpx's client for calls to other services, keeping no cookies.

    One client is shared by every tenant: a cookie one tenant's ATS (or destination) sets
    must never ride along on another tenant's call to the same host, and no API this service
    calls needs one.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()
