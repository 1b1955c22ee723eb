"""The shared HTTP client's transport: httpx's API over aiohttp's connection pool and C parser
(the ``httpx-aiohttp`` package), under the outbound URL policy.

httpx keeps its client, URLs, timeouts and exception classes for the code above it; aiohttp
does the HTTP/1.1 exchange, which under httpcore and h11 cost most of an ATS call's CPU
(bench/README.md, "Worker CPU per enrichment job"). The calls made once per event, ATS GETs
and deliveries, go through :func:`send_once`, past httpx's client layer and its request and
response objects; every other call (the iCIMS token exchange, SmartRecruiters' subscriptions)
through the client as usual.
What this module adds to httpx-aiohttp's transport:

* every request's URL (a redirect's included) is checked against the outbound policy
  (app/platform/outbound.py) before it is sent, and every address a host name resolves to
  before it is connected to (the resolver hands the connector only addresses it checked, so a
  name re-pointed between the check and the connection cannot slip through);
* aiohttp's session keeps no cookies (its default jar would carry one tenant's cookie to
  another tenant's call to the same host: the client is shared by every tenant);
* a refusal and aiohttp's errors reach the caller as the httpx exceptions httpcore raised for
  the same failure (httpx-aiohttp's own table reports a refused or reset connection as a
  ``ConnectTimeout``): the clients tell a timeout from an unreachable host by them.

aiohttp has no write timeout: httpx's ``write`` setting is not applied (the connect, read and
pool ones are). Only HTTP/1.1 is spoken, as before.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

from app.platform import outbound


class PolicyResolver(AbstractResolver):
    """aiohttp's default resolver, refusing a host any of whose addresses the policy refuses."""

    def __init__(self, policy: outbound.OutboundPolicy | None = None) -> None:
        # None: the process's policy at the time of each resolution.
        self._policy = policy
        self._resolver = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Every address of ``host``, each checked first."""
        results = await self._resolver.resolve(host, port, family)
        policy = self._policy or outbound.policy()
        for result in results:
            policy.check_resolved(host, ipaddress.ip_address(result["host"].split("%")[0]))
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._resolver.close()


def _httpx_error(exc: httpx.TransportError) -> httpx.TransportError:
    """``exc`` as the httpx exception its aiohttp cause stands for."""
    cause = exc.__cause__
    kind: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ClientProxyConnectionError):
        kind = httpx.ProxyError
    elif isinstance(cause, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(cause, aiohttp.ServerDisconnectedError):
        kind = httpx.RemoteProtocolError
    elif isinstance(cause, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError):
        kind = httpx.ReadError
    else:
        return exc
    if type(exc) is kind:
        return exc
    mapped = kind(str(exc))
    mapped.__cause__ = cause
    return mapped


class _Body(httpx.AsyncByteStream):
    """A response body whose read errors are mapped as the request's are."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            raise _httpx_error(exc) from exc.__cause__

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except httpx.TransportError as exc:
            raise _httpx_error(exc) from exc.__cause__


@functools.cache
def verified_context() -> ssl.SSLContext:
    """The process's one TLS context for outbound calls: certifi's CAs (or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``), as httpx builds it. Loading the CA bundle costs ~40 ms of CPU, and
    httpx and aiohttp each loaded it again for every client and transport built; a context
    holds no per-connection state and is shared safely."""
    return httpx.create_ssl_context()


class PolicyTransport(AiohttpTransport):
    """httpx-aiohttp's transport on a cookie-less session whose connector resolves through
    :class:`PolicyResolver`; a request the policy refuses is ``httpx.ConnectError``."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool | None = None,
        policy: outbound.OutboundPolicy | None = None,
    ) -> None:
        super().__init__(
            verify=verified_context() if verify is None else verify,
            limits=limits,
            client=self._session,
        )
        self._policy = policy

    def _session(self) -> aiohttp.ClientSession:
        # Built on the first request, inside the running loop (aiohttp wants one).
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry or 0,
            ssl=self.ssl_context,
            resolver=PolicyResolver(self._policy),
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    def _session_for(self, url: str) -> aiohttp.ClientSession:
        """The session to send ``url`` on, once the outbound policy has accepted it (else
        ``OutboundRefusedError``); built on the first request."""
        (self._policy or outbound.policy()).check_send(url)
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        return self.client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The request sent, unless the outbound policy refuses its URL or its host's
        addresses: then ``httpx.ConnectError``."""
        url = str(request.url)
        timeout = request.extensions.get("timeout", {})
        try:
            session = self._session_for(url)
            # httpx-aiohttp's own request, but with the URL as httpx encoded it: given a
            # string, aiohttp quotes it again ("%2C" in a query becomes ","), and an ATS may
            # see, or sign, other bytes than httpx built.
            with map_aiohttp_exceptions():
                data: Any
                try:
                    data = request.content or None
                except httpx.RequestNotRead:
                    data = request.stream
                    request.headers.pop("transfer-encoding", None)  # aiohttp chunks it
                answer = await session.request(
                    method=request.method,
                    url=yarl.URL(url, encoded=True),
                    headers=request.headers,
                    data=data,
                    allow_redirects=False,
                    auto_decompress=False,
                    compress=False,
                    timeout=_client_timeout(timeout),
                    server_hostname=request.extensions.get("sni_hostname"),
                ).__aenter__()
        except outbound.OutboundRefusedError as exc:
            raise httpx.ConnectError(
                f"refused by the outbound policy: {exc}", request=request
            ) from None
        except httpx.TransportError as exc:
            raise _httpx_error(exc) from exc.__cause__
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode()
        return httpx.Response(
            status_code=answer.status,
            headers=answer.raw_headers,
            stream=_Body(AiohttpResponseStream(answer)),
            request=request,
            extensions=extensions,
        )

    async def send(
        self,
        method: str,
        url: httpx.URL,
        content: bytes | None,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout,
    ) -> Answer:
        """:meth:`handle_async_request` for a request whose answer is read whole, without an
        httpx request or response object around it; the same policy check, URL, timeouts
        and errors. aiohttp decodes the body (it offers only the encodings it can decode)."""
        text = str(url)
        try:
            session = self._session_for(text)
            started = time.monotonic()
            with map_aiohttp_exceptions():
                async with session.request(
                    method,
                    yarl.URL(text, encoded=True),
                    headers=headers,
                    data=content,
                    allow_redirects=False,
                    compress=False,
                    timeout=_client_timeout(timeouts.as_dict()),
                ) as answer:
                    body = await answer.read()
                    return Answer(answer.status, answer.headers, body, time.monotonic() - started)
        except outbound.OutboundRefusedError as exc:
            raise httpx.ConnectError(f"refused by the outbound policy: {exc}") from None
        except httpx.TransportError as exc:
            raise _httpx_error(exc) from exc.__cause__


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer to :func:`send_once`, its body read and decoded."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    elapsed_s: float
    """From sending the request to having read the body."""

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON, parsed as httpx's ``Response.json`` parses it."""
        return json.loads(self.content)


def _client_timeout(timeout: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (a request's ``timeout`` extension) as aiohttp's: connect, read and
    pool (aiohttp has no write timeout)."""
    return aiohttp.ClientTimeout(
        sock_connect=timeout.get("connect"),
        sock_read=timeout.get("read"),
        connect=timeout.get("pool"),
    )


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
        # httpx builds a default transport even when every URL is mounted elsewhere: it
        # shares the process's context instead of loading the CA bundle once more.
        kwargs.setdefault("verify", verified_context())
        super().__init__(**kwargs)
        self._cookies = _NoCookies()


# Set by aiohttp from what it can decode, or per connection: never the client's defaults.
_TRANSPORT_HEADERS = frozenset({"accept-encoding", "connection"})


_DEFAULTS: weakref.WeakKeyDictionary[httpx.AsyncClient, tuple[httpx.Headers, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def _headers(client: httpx.AsyncClient, given: Mapping[str, str]) -> dict[str, str]:
    """The client's default headers (its user-agent, ...) overridden by ``given``."""
    # Read once per client, and again if its headers are replaced (not if they are changed in
    # place: no client here is): httpx's Headers cost more to walk per call than the rest.
    known = _DEFAULTS.get(client)
    if known is None or known[0] is not client.headers:
        defaults = {k: v for k, v in client.headers.items() if k not in _TRANSPORT_HEADERS}
        known = _DEFAULTS[client] = (client.headers, defaults)
    merged = dict(known[1])
    for key, value in given.items():
        merged[key.lower()] = value
    return merged


async def send_once(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    params: Mapping[str, str] | None = None,
    timeouts: httpx.Timeout | None = None,
) -> Answer:
    """``url`` requested as ``client.request`` sends it with ``follow_redirects=False``, and
    its answer read whole, without the client's layer around each request: the transport the
    client picks for ``url`` (a proxy from the environment included) gets the request, so the
    outbound policy and the errors are the transport's, as for any call. On the shared
    client's own transport no httpx request or response object is built either.

    Kept from the client: its default headers (but Accept-Encoding, which the transport
    offers as it can decode) and its timeouts unless ``timeouts`` is given. Not applied: a
    base URL (``url`` is absolute), cookies (:class:`OutboundClient` keeps none), auth and
    event hooks (none are set) and redirects (not followed either way). Deliveries and ATS
    calls go through here: building each request through the client (URL and header merging,
    the auth and redirect wrappers) cost as much CPU as the exchange itself, and httpx's
    request and response objects a third as much again.
    """
    target = httpx.URL(url)
    if params:
        target = target.copy_merge_params(params)
    merged = _headers(client, headers)
    timeout = timeouts if timeouts is not None else client.timeout
    transport = client._transport_for_url(target)
    if isinstance(transport, PolicyTransport):
        return await transport.send(method, target, content, merged, timeout)
    request = httpx.Request(
        method, target, content=content, headers=merged, extensions={"timeout": timeout.as_dict()}
    )
    started = time.monotonic()
    response = await transport.handle_async_request(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return Answer(
        response.status_code, response.headers, response.content, time.monotonic() - started
    )
