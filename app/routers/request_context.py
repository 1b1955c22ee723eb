"""Each HTTP request's id, log context and answer latency, as plain ASGI middleware.

A request id the caller sends in ``X-Request-Id`` is kept if it is short and plain, so a
sender's or a proxy's id can be followed through; otherwise one is generated. It is bound to
the log context of everything the request does (app.platform.logs), returned in the answer's
``X-Request-Id`` header, and carried into the jobs the request enqueues
(app.platform.queue.carried_context). Plain ASGI rather than Starlette's
``BaseHTTPMiddleware``: that one runs the app in another task, which costs time on every
event and loses the context.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform.metrics import ACK_SECONDS, OTHER, Children

REQUEST_ID_HEADER = "x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

# Where the middleware leaves the source it found for a request (an ASGI extension key), for
# the routes' error rendering (app.routers.common.render).
SOURCE_KEY = "hirehook.source"
_ACK_SECONDS = Children(ACK_SECONDS)
_SERVER_ERROR_BODY: Message = {"type": "http.response.body", "body": b"Internal Server Error"}
_SERVER_ERROR_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
}


def source_of(path: str, paths: Mapping[str, str]) -> str:
    """The label of the event route serving ``path`` (``paths``: prefix -> label, from the
    source registry), else ``"other"``."""
    for prefix, source in paths.items():
        if path.startswith(prefix):
            return source
    return OTHER


def source_in(scope: Scope) -> str:
    """The label :class:`RequestContext` found for this request, else ``"other"``."""
    source: str = scope.get(SOURCE_KEY, OTHER)
    return source


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if it is plain and at most 128 characters, else a new one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            sent = value.decode("latin-1")
            if _SANE_ID.fullmatch(sent):
                return sent
            break
    # 128 random bits as 32 hex digits, as uuid4().hex gave, without building a UUID object
    # on every request.
    return os.urandom(16).hex()


class RequestContext:
    """Binds ``request_id`` (and the tenant an event route's path names) to the log context,
    answers with ``X-Request-Id`` and times event routes' answers by source and status."""

    def __init__(
        self, app: ASGIApp, *, paths: Mapping[str, str], tenant_in_path: frozenset[str]
    ) -> None:
        self.app = app
        # The event routes, by path prefix (app.sources.paths): what the sender sees as
        # latency is measured for these.
        self.paths = dict(paths)
        # The labels whose routes read /v1/<source>/<tenant>/...: the tenant is in the path.
        self.tenant_in_path = tenant_in_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        path: str = scope["path"]
        source = scope[SOURCE_KEY] = source_of(path, self.paths)
        context: dict[str, str] = {"request_id": request_id}
        if source in self.tenant_in_path:
            parts = path.split("/")
            # Unverified here: the slug is logged as the sender claimed it, never trusted.
            if len(parts) > 3 and _SLUG.fullmatch(parts[3]):
                context["tenant"] = parts[3]
        status = 0
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        started = time.monotonic()
        # Bound and reset by token: structlog's bound_contextvars copies the whole context
        # and binds twice more on the way out, on every request.
        tokens = structlog.contextvars.bind_contextvars(**context)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # What Starlette's server-error middleware answers, for the event routes, which
            # are dispatched above it (app.routers.dispatch); raised on for the server to log.
            if not status:
                await send_with_id(_SERVER_ERROR_START)
                await send_with_id(_SERVER_ERROR_BODY)
            raise
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            if source != OTHER:
                # No answer at all (the request cancelled, its sender gone) counts as a 500.
                _ACK_SECONDS(source, str(status or 500)).observe(time.monotonic() - started)
