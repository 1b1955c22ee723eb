"""Fake HR Manager and SmartRecruiters APIs and a fake vendor destination, served over real HTTP
on loopback by uvicorn in a thread of its own (so worker subprocesses can reach it too).

Shapes follow docs/ats/hrmanager.md and docs/ats/smartrecruiters.md: HR Manager under
``/restful.svc/v2/{alias}/Candidates/{id}`` with an ``apikey`` header; SmartRecruiters
``GET /candidates/{id}`` and ``GET /jobs/{id}`` with ``X-SmartToken``, rate-limit headers,
and a 429 when more than one ``GET /candidates`` runs at once; the lists ``GET /candidates`` and
``GET /jobs`` with ``updatedAfter``, ``limit`` (1-100) and ``pageId``/``nextPageId`` paging,
answering ``{limit, offset, totalFound, content[]}``. A script of :class:`Step` makes the next
matching requests slow, hang, or answer 429 + Retry-After, 5xx or 401.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HRM_KEY = "hrm-api-key-4f9a"
SR_TOKEN = "sr-smart-token-77c1"
HRM_ALIAS = "acme-corp"


@dataclass
class Step:
    """How to answer the next request whose path starts with ``match``."""

    match: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    # Merged into the served document: tells one fetch's answer from another's.
    patch: dict[str, Any] = field(default_factory=dict)
    # Wait until released (or the server stops); the caller is expected to give up first.
    hang: bool = False
    # Let this many matching requests through before the step applies.
    after: int = 0


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    path: str
    headers: dict[str, str]
    started: float
    finished: float = 0.0
    status: int = 0
    body: bytes = b""
    query: str = ""


class FakeATS:
    """The fake APIs' state: documents, the script, and every call made."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.hrm_candidates: dict[str, dict[str, Any]] = {}
        self.hrm_positions: dict[str, dict[str, Any]] = {}
        self.hrm_users: dict[str, dict[str, Any]] = {}
        self.sr_candidates: dict[str, dict[str, Any]] = {}
        self.sr_jobs: dict[str, dict[str, Any]] = {}
        self.sr_candidate_concurrency = 1
        self.calls: list[Call] = []
        self.script: deque[Step] = deque()
        self.inflight: Counter[str] = Counter()
        self.max_inflight: Counter[str] = Counter()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.url = ""

    # --- documents -----------------------------------------------------------------------

    def add_hrm_candidate(self, cid: str, *, positions: Sequence[str] = (), **extra: Any) -> None:
        """An HR Manager candidate with applications to ``positions``."""
        self.hrm_candidates[cid] = {
            "Id": cid,
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": f"ada.{cid}@example.com",
            "PositionList": [{"PositionId": p, "Status": "Interview"} for p in positions],
            **extra,
        }

    def add_hrm_position(self, pid: str, **extra: Any) -> None:
        """An HR Manager position."""
        self.hrm_positions[pid] = {"Id": pid, "Name": f"Engineer {pid}", "Status": "Published"}
        self.hrm_positions[pid].update(extra)

    def add_hrm_user(self, uid: str, **extra: Any) -> None:
        """An HR Manager user (a recruiter)."""
        self.hrm_users[uid] = {"Id": uid, "Name": f"Recruiter {uid}", **extra}

    def add_sr_candidate(self, cid: str, *, jobs: Sequence[str] = (), **extra: Any) -> None:
        """A SmartRecruiters candidate assigned to ``jobs`` (the first is primary)."""
        assignments = [{"job": {"id": j, "title": f"Job {j}"}, "status": "IN_REVIEW"} for j in jobs]
        self.sr_candidates[cid] = {
            "id": cid,
            "internal": False,
            "firstName": "Grace",
            "lastName": "Hopper",
            "email": f"grace.{cid}@example.com",
            "createdOn": "2026-11-01T10:00:00.000Z",
            "primaryAssignment": assignments[0] if assignments else None,
            "secondaryAssignments": assignments[1:],
            **extra,
        }

    def add_sr_job(self, jid: str, **extra: Any) -> None:
        """A SmartRecruiters job."""
        self.sr_jobs[jid] = {
            "id": jid,
            "title": f"Compiler Engineer {jid}",
            "status": "SOURCING",
            "location": {"city": "Oslo", "country": "no"},
            **extra,
        }

    # --- inspection ----------------------------------------------------------------------

    def calls_to(self, prefix: str, *, method: str = "GET") -> list[Call]:
        """Calls whose path starts with ``prefix``."""
        with self._lock:
            return [c for c in self.calls if c.path.startswith(prefix) and c.method == method]

    def deliveries(self) -> list[Call]:
        """Successful deliveries to the vendor endpoint."""
        return [c for c in self.calls_to("/vendor", method="POST") if c.status == 200]

    @property
    def hrm_base(self) -> str:
        """The HR Manager base URL, as a connection's options.base_url."""
        return f"{self.url}/hrm/restful.svc/v2"

    @property
    def sr_base(self) -> str:
        """The SmartRecruiters base URL."""
        return f"{self.url}/sr"

    @property
    def vendor_url(self) -> str:
        """The vendor's destination URL."""
        return f"{self.url}/vendor/hooks"

    # --- the app -------------------------------------------------------------------------

    def _next_step(self, path: str) -> Step | None:
        with self._lock:
            for step in self.script:
                if path.startswith(step.match):
                    if step.after > 0:
                        step.after -= 1
                        continue
                    self.script.remove(step)
                    return step
        return None

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        call = Call(
            request.method, path, dict(request.headers), time.monotonic(), query=request.url.query
        )
        call.body = await request.body()
        with self._lock:
            self.calls.append(call)
        route = "/sr/candidates" if path.startswith("/sr/candidates") else path.split("/")[1]
        self.inflight[route] += 1
        self.max_inflight[route] = max(self.max_inflight[route], self.inflight[route])
        try:
            response = await self._answer(request, path, route)
        finally:
            self.inflight[route] -= 1
        call.status = response.status_code
        call.finished = time.monotonic()
        return response

    async def _answer(  # noqa: PLR0911 - one answer per route and fault
        self, request: Request, path: str, route: str
    ) -> Response:
        step = self._next_step(path) or Step()
        if step.hang:
            # Until released, or until the caller goes away (killed, or timed out).
            end = time.monotonic() + 60
            while not self.released.is_set() and time.monotonic() < end:
                if await request.is_disconnected():
                    return _json(499, {"error": "client went away"})
                await asyncio.sleep(0.05)
        await asyncio.sleep(step.delay_s or self.delay_s)
        if step.status != 200:
            return _json(step.status, {"error": f"scripted {step.status}"}, step.headers)
        if path.startswith("/vendor"):
            return _json(200, {"ok": True})
        if path.startswith("/hrm"):
            return self._hrm(request, path, step)
        if path.startswith("/sr"):
            if route == "/sr/candidates" and self.inflight[route] > self.sr_candidate_concurrency:
                return _json(429, {"message": "concurrent limit"}, {"Retry-After": "1"})
            return self._sr(request, path, step)
        return _json(404, {"error": "no such route"})

    def _hrm(self, request: Request, path: str, step: Step) -> Response:
        if request.headers.get("apikey") != HRM_KEY:
            return _json(401, {"Message": "Authorization has been denied for this request."})
        parts = path.split("/")  # ['', 'hrm', 'restful.svc', 'v2', alias, kind, id]
        if len(parts) != 7 or parts[4] != HRM_ALIAS:
            return _json(404, {"Message": "No HTTP resource was found."})
        store = {
            "Candidates": self.hrm_candidates,
            "Positions": self.hrm_positions,
            "Users": self.hrm_users,
        }.get(parts[5])
        document = (store or {}).get(parts[6])
        if document is None:
            return _json(404, {"Message": "Not found"})
        return _json(200, {**copy.deepcopy(document), **step.patch})

    def _sr(self, request: Request, path: str, step: Step) -> Response:
        if request.headers.get("x-smarttoken") != SR_TOKEN:
            return _json(401, {"message": "Invalid token", "errors": [{"code": "UNAUTHORIZED"}]})
        parts = path.split("/")  # ['', 'sr', 'candidates' | 'jobs', id]
        store = {"candidates": self.sr_candidates, "jobs": self.sr_jobs}.get(parts[2])
        if store is not None and len(parts) == 3:
            return _sr_list(request, store)
        document = (store or {}).get(parts[3]) if len(parts) == 4 else None
        if document is None:
            return _json(404, {"message": "Not found"})
        headers = {
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "9",
            "X-RateLimit-Concurrent-Limit": "1" if parts[2] == "candidates" else "8",
            "X-RateLimit-Concurrent-Remaining": "0" if parts[2] == "candidates" else "7",
        }
        return _json(200, {**copy.deepcopy(document), **step.patch}, headers)

    def app(self) -> Starlette:
        """The ASGI app answering every path."""
        methods = ["GET", "POST"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])


def _sr_list(request: Request, store: dict[str, dict[str, Any]]) -> Response:
    """A SmartRecruiters list: items updated after ``updatedAfter`` (their ``updatedOn``, else
    ``createdOn``), oldest first, ``limit`` per page, the next page's id in ``nextPageId``."""
    query = request.query_params
    try:
        limit = int(query.get("limit", "10"))
        after = _instant(query["updatedAfter"]) if "updatedAfter" in query else None
        offset = int(query["pageId"].removeprefix("pg-")) if "pageId" in query else 0
    except ValueError as exc:
        return _json(400, {"message": f"invalid parameter: {exc}"})
    if not 1 <= limit <= 100:
        return _json(400, {"message": "limit must be between 1 and 100"})
    listed = sorted(
        (
            (_instant(d.get("updatedOn") or d["createdOn"]), key, d)
            for key, d in store.items()
            if after is None or _instant(d.get("updatedOn") or d["createdOn"]) > after
        ),
        key=lambda entry: (entry[0], entry[1]),
    )
    content = [copy.deepcopy(d) for _, _, d in listed[offset : offset + limit]]
    body: dict[str, Any] = {
        "limit": limit,
        "offset": offset,
        "totalFound": len(listed),
        "content": content,
    }
    if offset + limit < len(listed):
        body["nextPageId"] = f"pg-{offset + limit}"
    return _json(200, body)


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


@contextmanager
def serve(fake: FakeATS) -> Iterator[FakeATS]:
    """Run ``fake`` on 127.0.0.1 (ephemeral port) in a thread for the block's duration."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        fake.app(),
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > end:
            raise TimeoutError("the fake ATS did not start")
        time.sleep(0.01)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield fake
    finally:
        fake.released.set()
        server.should_exit = True
        thread.join(10)
        sock.close()
