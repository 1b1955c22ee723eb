"""A fake SmartRecruiters Webhooks Subscriptions API, served over real HTTP on loopback, that
really runs the activation handshake against the callback URL and signs its notifications; and
SmartRecruiters' rate limit (:class:`SlidingWindowLimit`) to put in front of any fake API.

Shapes follow docs/ats/smartrecruiters.md: ``/webhooks-api/v201907/subscriptions`` with
``X-SmartToken``; ``POST`` answers ``{id, callbackUrl, events, status: "inactive"}``;
``PUT /{id}/activation`` POSTs ``X-Hook-Secret`` to the callback URL, wants it echoed with a
200 within 20 s, then answers 204 (or 400 when the handshake failed); ``POST /{id}/secret-key``
makes a new key and keeps the previous one live for 24 hours, and every notification carries one
``v1=`` signature per live key. The signature is computed here independently of
app/verifiers/smartrecruiters.py.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.support.fake_ats import SR_TOKEN

PREFIX = "/webhooks-api/v201907/subscriptions"
DAY_S = 24 * 3600


def sr_signature(key: str, timestamp: str, body: bytes, headers: dict[str, str]) -> str:
    """v1 as the SmartRecruiters reference describes it (hex HMAC-SHA256)."""
    parts = [headers.get(h, "") for h in ("event-id", "event-name", "event-version", "link")]
    message = timestamp.encode() + b"." + body + b"." + ".".join(parts).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sr_headers(
    keys: list[str],
    body: bytes,
    *,
    event_name: str,
    event_id: str,
    event_version: str = "v201910",
    link: str = "<https://api.smartrecruiters.com/candidates/x>; rel=self",
    timestamp: int | None = None,
) -> dict[str, str]:
    """The headers of one notification signed with each of ``keys``."""
    headers = {
        "content-type": "application/json",
        "event-name": event_name,
        "event-version": event_version,
        "event-id": event_id,
        "link": link,
    }
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers["smartrecruiters-timestamp"] = stamp
    headers["smartrecruiters-signature"] = ";".join(
        f"v1={sr_signature(k, stamp, body, headers)}" for k in keys
    )
    return headers


@dataclass
class Key:
    """One generated key; ``expires`` is None while it is the newest."""

    value: str
    expires: float | None = None


@dataclass
class Subscription:
    """One subscription as the fake keeps it."""

    id: str
    callback_url: str
    events: list[dict[str, Any]]
    status: str = "inactive"
    keys: list[Key] = field(default_factory=list)
    hook_secret: str = ""

    def live_keys(self) -> list[str]:
        """Keys SmartRecruiters still signs with."""
        now = time.time()
        return [k.value for k in self.keys if k.expires is None or now < k.expires]


class FakeSmartRecruiters:
    """The fake API's state and every request it answered."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.requests: list[tuple[str, str]] = []
        self.handshakes: list[httpx.Response | str] = []
        self.url = ""

    def notify(
        self, subscription_id: str, event_name: str, payload: Any, *, event_id: str
    ) -> httpx.Response:
        """POST one notification to the subscription's callback, as SmartRecruiters would."""
        sub = self.subscriptions[subscription_id]
        body = orjson.dumps(payload)
        headers = sr_headers(sub.live_keys(), body, event_name=event_name, event_id=event_id)
        return httpx.post(sub.callback_url, content=body, headers=headers, timeout=10)

    async def _handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        if request.headers.get("x-smarttoken") != SR_TOKEN:
            return _json(401, {"message": "Invalid token"})
        path = request.url.path.removeprefix(PREFIX).strip("/")
        parts = path.split("/") if path else []
        if request.method == "POST" and not parts:
            body = orjson.loads(await request.body())
            created = Subscription(uuid.uuid4().hex[:16], body["callbackUrl"], body["events"])
            self.subscriptions[created.id] = created
            return _json(201, self._view(created))
        sub = self.subscriptions.get(parts[0]) if parts else None
        if sub is None:
            return _json(404, {"message": "Subscription not found"})
        return await self._on_subscription(sub, request.method, "/".join(parts[1:]))

    async def _on_subscription(self, sub: Subscription, method: str, action: str) -> Response:
        if (method, action) == ("PUT", "activation"):
            return await self._activate(sub)
        if (method, action) == ("POST", "secret-key"):
            return self._new_key(sub)
        if (method, action) == ("DELETE", ""):
            del self.subscriptions[sub.id]
            return Response(status_code=204)
        return _json(405, {"message": "Method not allowed"})

    @staticmethod
    def _new_key(sub: Subscription) -> Response:
        now = time.time()
        for key in sub.keys:
            if key.expires is None:
                key.expires = now + DAY_S
        sub.keys = [k for k in sub.keys if k.expires is None or k.expires > now]
        if len(sub.keys) >= 16:
            return _json(400, {"message": "Too many secret keys"})
        sub.keys.append(Key(secrets.token_urlsafe(24)))
        return _json(201, {"secretKey": sub.keys[-1].value})

    async def _activate(self, sub: Subscription) -> Response:
        secret = secrets.token_urlsafe(12)
        try:
            async with httpx.AsyncClient(timeout=20) as http:
                answer = await http.post(sub.callback_url, headers={"X-Hook-Secret": secret})
        except httpx.HTTPError as exc:
            self.handshakes.append(type(exc).__name__)
            return _json(400, {"message": "Callback URL is not reachable"})
        self.handshakes.append(answer)
        if answer.status_code != 200 or answer.headers.get("x-hook-secret") != secret:
            return _json(400, {"message": "Handshake failed"})
        sub.status = "active"
        sub.hook_secret = secret
        return Response(status_code=204)

    @staticmethod
    def _view(sub: Subscription) -> dict[str, Any]:
        return {
            "id": sub.id,
            "callbackUrl": sub.callback_url,
            "events": sub.events,
            "status": sub.status,
        }

    def app(self) -> Starlette:
        """The ASGI app answering every path."""
        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


@contextmanager
def serve_asgi(app: ASGIApp, *, lifespan: str = "off") -> Iterator[str]:
    """Run ``app`` on 127.0.0.1 (ephemeral port) in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan=lifespan,  # type: ignore[arg-type]
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > end:
            raise TimeoutError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serve_fake() -> Iterator[FakeSmartRecruiters]:
    """The fake API, running for the block's duration."""
    fake = FakeSmartRecruiters()
    with serve_asgi(fake.app()) as url:
        fake.url = url
        yield fake


class SlidingWindowLimit:
    """SmartRecruiters' rate limit in front of a fake API: at most ``limit`` requests per
    credential (``X-SmartToken``) in **any** ``window_s`` window, counted when each request
    arrives; beyond it 429 with ``Retry-After`` (seconds until the oldest counted request
    leaves the window, rounded up) and ``X-RateLimit-Remaining: 0``. Every answer carries
    ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` as this window sees them
    (docs/ats/smartrecruiters.md; the documented headers, replacing any the wrapped app sent).
    Refused requests
    do not count."""

    def __init__(
        self, app: ASGIApp, *, limit: int = 10, window_s: float = 1.0, prefix: str = "/sr"
    ) -> None:
        self.app = app
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix
        # Arrival times (monotonic) of the requests let through, and of those refused.
        self.admitted: list[float] = []
        self.refused: list[float] = []
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _admit(self, credential: str) -> tuple[bool, int, float]:
        """(admitted, remaining, seconds until a request would be admitted)."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(credential, deque())
            while window and window[0] <= now - self.window_s:
                window.popleft()
            if len(window) >= self.limit:
                self.refused.append(now)
                return False, 0, window[0] + self.window_s - now
            window.append(now)
            self.admitted.append(now)
            return True, self.limit - len(window), 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        credential = headers.get("x-smarttoken", b"").decode("latin-1")
        admitted, remaining, wait_s = self._admit(credential)
        limit_headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
        ]
        if not admitted:
            body = orjson.dumps({"message": "Rate limit exceeded"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(max(1, math.ceil(wait_s))).encode()),
                        *limit_headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-ratelimit-limit", b"x-ratelimit-remaining")
                ]
                message = {**message, "headers": kept + limit_headers}
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def max_in_any_window(self) -> int:
        """The most requests let through in one ``window_s`` window, wherever it starts."""
        times = sorted(self.admitted)
        most, first = 0, 0
        for last, moment in enumerate(times):
            while times[first] <= moment - self.window_s:
                first += 1
            most = max(most, last - first + 1)
        return most
