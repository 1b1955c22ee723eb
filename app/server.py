"""The API under uvicorn, with every connection bounded in time and size, busy or idle."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.platform.metrics import multiprocess_dir, prepare_multiprocess_dir, remove_multiprocess_dir
from app.platform.settings import Settings, get_settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size cap on each request's headers,
    and a lingering close for answers sent before the request's body was read.

    uvicorn times out only the idle gap after a response (``timeout_keep_alive``), and the
    first byte received cancels that timer. A connection that sends nothing, or sends its
    request line and headers a byte at a time, is otherwise kept forever, and the header
    bytes it sends are buffered without limit. Here a clock runs from the connection's
    opening, or from the first byte of a later request on it, until the request's headers
    are complete. Idle time between requests stays keep-alive's, so raising it (behind a
    load balancer that reuses connections) is not undone by this shorter clock. The body is
    the application's business (``app.routers.common.read_raw``).

    A refusal sent before the body was read (a declared length over the cap, a wrong admin
    key) would, closed at once, reach most clients as a connection reset: they write the
    whole body before reading, and a socket closed with unread data sends a reset that
    discards the answer on the way. So, as nginx does, such a connection is half-closed
    after the answer and what still arrives is read and thrown away, until the body is
    complete or the client hangs up, for at most ``linger_s`` seconds and ``linger_bytes``
    bytes, and only then closed. Nothing read while lingering is kept.
    """

    def __init__(
        self,
        *args: Any,
        header_timeout_s: float,
        max_header_bytes: int,
        linger_s: float,
        linger_bytes: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_header_bytes = max_header_bytes
        self.linger_s = linger_s
        self.linger_bytes = linger_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._idle = False
        self._raw: asyncio.Transport | None = None
        # The current request's declared body bytes not received yet (None: chunked).
        self._body_left: int | None = 0
        self._lingering = False
        self._linger_left = 0
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn closes through self.transport (its request cycles take it from here), so a
        # close it asks for passes through _close_requested first.
        self._raw = transport
        self.transport = _LingeringTransport(transport, self)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        self._stop_linger_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discard(len(data))
            return
        if self._idle:
            self._idle = False
            self._start_header_clock()
        if self._header_timer is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        # Checked after parsing, so a read that also completes the headers is never refused.
        if (
            self._header_timer is not None
            and self._header_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._stop_header_clock()
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._stop_header_clock()
        self._body_left = _declared_length(self.headers)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._body_left is not None:
            self._body_left -= len(body)
        super().on_body(body)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        async def answering(
            scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            async def send_closing(message: ASGISendEvent) -> None:
                if message["type"] == "http.response.start" and cycle.more_body:
                    # Answered before the body is all in: uvicorn then says "connection:
                    # close", so no client reuses a connection that will linger and close.
                    cycle.keep_alive = False
                await send(message)

            await app(scope, receive, send_closing)

        super()._start_asgi_task(cycle, answering)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn arms its keep-alive timer exactly when the connection falls idle (not
        # closing, no pipelined request to start): the next byte begins a new request.
        self._idle = self.timeout_keep_alive_task is not None

    def is_closing(self) -> bool:
        """Whether the connection is closing, lingering included."""
        assert self._raw is not None
        return self._lingering or self._raw.is_closing()

    def close_requested(self) -> None:
        """Close now, or linger first when the current request's body is still arriving."""
        raw = self._raw
        assert raw is not None
        if self._lingering:
            self._end_linger(cut=True)
        elif self._body_pending() and raw.can_write_eof() and not raw.is_closing():
            self._start_linger(raw)
        else:
            raw.close()

    def _body_pending(self) -> bool:
        return self.cycle is not None and self.cycle.more_body and self._body_left != 0

    def _start_linger(self, raw: asyncio.Transport) -> None:
        self._lingering = True
        self._stop_header_clock()
        self._unset_keepalive_if_required()
        # What the application did not read is dropped with the rest.
        self.cycle.body = bytearray()
        self._linger_left = self.linger_bytes
        # The answer is flushed, then the sending side shut: the client sees the whole
        # answer and its end, while its own writes are still taken in.
        raw.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(self.linger_s, self._end_linger, True)

    def _discard(self, size: int) -> None:
        self._linger_left -= size
        if self._body_left is not None:
            self._body_left -= size
        if self._linger_left < 0:
            self._end_linger(cut=True)
        elif self._body_left is not None and self._body_left <= 0:
            # All of the body is in: a close now leaves nothing unread to reset the answer.
            self._end_linger(cut=False)

    def _end_linger(self, cut: bool) -> None:
        self._stop_linger_clock()
        raw = self._raw
        assert raw is not None
        if cut:
            # Past a bound: whatever is still in flight is the client's loss, not ours.
            raw.abort()
        else:
            raw.close()

    def _stop_linger_clock(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def _start_header_clock(self) -> None:
        self._stop_header_clock()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._header_bytes and not self.transport.is_closing():
            # A sender that was mid-request learns why; a silent one is just dropped.
            self.transport.write(_TIMED_OUT)
        # abort(), not close(): close() waits to flush output to a peer that may never read
        # it. The short answer above went straight to the kernel's buffer, which abort()
        # leaves to be delivered.
        self.transport.abort()


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """A request's declared body length: 0 without one, None when chunked (or unreadable)."""
    length = 0
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if not value.strip().isdigit():
                return None
            length = int(value)
    return length


class _LingeringTransport(asyncio.Transport):
    """A connection's transport, whose closing its protocol decides (see
    :class:`BoundedHttpToolsProtocol`); everything else goes straight through."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol) -> None:
        super().__init__()
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_requested()

    def is_closing(self) -> bool:
        return self._protocol.is_closing()

    def abort(self) -> None:
        self._transport.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


def served_app() -> FastAPI:
    """The app as each uvicorn process builds it: logging configured first, because a worker
    process uvicorn spawns inherits nothing of the parent's configuration."""
    from app.main import create_app
    from app.platform.logs import configure

    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    return create_app(settings)


def uvicorn_config_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` (or ``uvicorn.Config``) serving the API."""
    return {
        "app": "app.server:served_app",
        "factory": True,
        "host": settings.api_host,
        "port": settings.api_port,
        "workers": settings.api_workers,
        "loop": "uvloop",
        # uvicorn calls this as it would a protocol class. A partial of a module-level class
        # pickles, so the limits reach the processes uvicorn spawns for workers > 1.
        "http": partial(
            BoundedHttpToolsProtocol,
            header_timeout_s=settings.api_header_timeout_s,
            max_header_bytes=settings.api_max_header_bytes,
            linger_s=settings.api_linger_s,
            linger_bytes=settings.api_linger_bytes,
        ),
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "timeout_keep_alive": settings.api_keepalive_s,
        # uvicorn answers 503 once the open connections, the asking one included, reach
        # limit_concurrency: + 1 serves exactly api_max_connections at once.
        "limit_concurrency": settings.api_max_connections + 1,
        "backlog": settings.api_backlog,
        "timeout_graceful_shutdown": settings.api_shutdown_timeout_s,
    }


def run_api(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> None:
    """Serve the API until stopped; ``host``, ``port`` and ``workers`` override settings.

    With more than one worker process, metrics run in prometheus-client's multiprocess mode
    (app.platform.metrics): the directory is emptied here, before any process writes to it.
    """
    kwargs = uvicorn_config_kwargs(settings)
    if host is not None:
        kwargs["host"] = host
    if port is not None:
        kwargs["port"] = port
    if workers is not None:
        kwargs["workers"] = workers
    created = None
    if kwargs["workers"] > 1 or multiprocess_dir() is not None:
        given = multiprocess_dir()
        path = prepare_multiprocess_dir()
        created = None if given else path
    try:
        uvicorn.run(**kwargs)
    finally:
        if created is not None:
            remove_multiprocess_dir(created)
