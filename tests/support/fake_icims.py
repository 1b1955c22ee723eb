"""A fake iCIMS REST API on loopback: a real HTTP server speaking the documented shapes.

- ``POST /oauth2/token``: client credentials (HTTP Basic or form fields) ->
  ``{"access_token", "token_type": "Bearer", "expires_in"}``; ``{"error": "invalid_client"}``.
- ``GET /customers/{customerId}/{people|jobs|applicantworkflows}/{id}[?fields=a,b]``: a Bearer
  token is required; only the requested fields come back; unknown ids answer 404 with
  ``X-Error: 2:... not found.`` and ``{"errors":[{"errorMessage", "errorCode": 2}]}``.
- Faults per path: any status with iCIMS's error body (429 with ``Retry-After``, 5xx, access
  denied), or a delay long enough to trip a caller's time budget.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ERROR_CODES = {404: 2, 400: 1, 500: 0}
KIND_NAMES = {"people": "Person", "jobs": "Job", "applicantworkflows": "Applicant workflow"}


@dataclass
class Fault:
    """What the fake does instead of answering normally."""

    status: int | None = None
    delay_s: float = 0.0
    error_code: int | None = None
    message: str = "Simulated failure."
    headers: dict[str, str] = field(default_factory=dict)
    # How many requests it affects; None: all.
    times: int | None = None


def icims_error(status: int, code: int, message: str, **headers: str) -> JSONResponse:
    """An error in iCIMS's API shape: ``X-Error`` header plus ``{"errors": [...]}``."""
    return JSONResponse(
        {"errors": [{"errorMessage": message, "errorCode": code}]},
        status,
        headers={"X-Error": f"{code}:{message}", **headers},
    )


class FakeIcims:
    """State and server of one fake iCIMS."""

    def __init__(self) -> None:
        self.clients: dict[str, str] = {}
        self.documents: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.faults: dict[str, Fault] = {}
        self.token_fault: Fault | None = None
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []
        self.token_requests: list[str] = []
        self.token_expires_in = 3600
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- state --------------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str) -> None:
        """Accept these API credentials at the token endpoint."""
        self.clients[client_id] = client_secret

    def put(self, customer: str, kind: str, profile_id: str, document: dict[str, Any]) -> None:
        """Store a profile."""
        self.documents[(customer, kind, profile_id)] = document

    def fail(self, path: str, fault: Fault) -> None:
        """Make requests to ``path`` misbehave."""
        self.faults[path] = fault

    def revoke_tokens(self) -> None:
        """Forget every token issued so far (the API then answers 401)."""
        self.tokens.clear()

    def profile_requests(self) -> list[str]:
        """Paths (with query) of the profile GETs received, in order."""
        return [f"{path}?{query}" if query else path for _, path, query in self.requests]

    # --- app ----------------------------------------------------------------------------------

    async def _delay(self, seconds: float) -> None:
        # Slow, but never slower than shutting down: a test's teardown must not wait for it.
        # should_exit is a plain flag set from the test's thread, so there is no event to await.
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (self._server and self._server.should_exit):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.token_requests.append(str(form.get("grant_type")))
        if self.token_fault is not None:
            fault = self.token_fault
            await self._delay(fault.delay_s)
            if fault.status is not None:
                return JSONResponse({"error": "server_error"}, fault.status)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if not client_id or self.clients.get(str(client_id)) != client_secret:
            return JSONResponse({"error": "invalid_client"}, 401)
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_expires_in},
            headers={"Cache-Control": "no-store"},
        )

    async def _profile(self, request: Request) -> Response:
        customer = request.path_params["customer"]
        kind = request.path_params["kind"]
        profile_id = request.path_params["profile_id"]
        path = request.url.path
        self.requests.append((request.method, path, request.url.query))
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self.tokens:
            return icims_error(401, 6, "Invalid or expired access token.")
        fault = self.faults.get(path)
        if fault is not None and (fault.times is None or fault.times > 0):
            if fault.times is not None:
                fault.times -= 1
            await self._delay(fault.delay_s)
            if fault.status is not None:
                code = fault.error_code
                if code is None:
                    code = ERROR_CODES.get(fault.status, 0)
                return icims_error(fault.status, code, fault.message, **fault.headers)
        document = self.documents.get((customer, kind, profile_id))
        if document is None:
            return icims_error(404, 2, f"{KIND_NAMES.get(kind, 'Profile')} not found.")
        fields = request.query_params.get("fields")
        if fields:
            wanted = set(fields.split(","))
            document = {k: v for k, v in document.items() if k in wanted}
        return JSONResponse(document)

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/oauth2/token", self._token, methods=["POST"]),
                Route(
                    "/customers/{customer}/{kind:str}/{profile_id:str}",
                    self._profile,
                    methods=["GET"],
                ),
            ]
        )

    # --- server -------------------------------------------------------------------------------

    def start(self) -> FakeIcims:
        """Serve on 127.0.0.1 with an ephemeral port, in a thread with its own event loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:  # pragma: no cover
                raise RuntimeError("fake iCIMS did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
