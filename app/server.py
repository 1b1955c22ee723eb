"""The API under uvicorn, with every connection bounded in time and size, busy or idle."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.metrics import multiprocess_dir, prepare_multiprocess_dir, remove_multiprocess_dir
from app.settings import Settings, get_settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size cap on each request's headers.

    uvicorn times out only the idle gap after a response (``timeout_keep_alive``), and the
    first byte received cancels that timer. A connection that sends nothing, or sends its
    request line and headers a byte at a time, is otherwise kept forever, and the header
    bytes it sends are buffered without limit. Here a clock runs from the connection's
    opening, or from the first byte of a later request on it, until the request's headers
    are complete. Idle time between requests stays keep-alive's, so raising it (behind a
    load balancer that reuses connections) is not undone by this shorter clock. The body is
    the application's business (``app.body.read_raw``).
    """

    def __init__(
        self, *args: Any, header_timeout_s: float, max_header_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_header_bytes = max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._idle = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
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
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn arms its keep-alive timer exactly when the connection falls idle (not
        # closing, no pipelined request to start): the next byte begins a new request.
        self._idle = self.timeout_keep_alive_task is not None

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


def served_app() -> FastAPI:
    """The app as each uvicorn process builds it: logging configured first, because a worker
    process uvicorn spawns inherits nothing of the parent's configuration."""
    from app.logs import configure
    from app.main import create_app

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
    (app.metrics): the directory is emptied here, before any process writes to it.
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
