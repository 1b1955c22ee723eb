"""Stand-in HR Manager and SmartRecruiters APIs for ``hirehook dev``, on loopback only.

With them the demo tenant's events are enriched end to end (candidates, positions, jobs are
fetched) and its polled SmartRecruiters connection finds new candidates, without any real ATS
account. Shapes follow docs/ats/hrmanager.md and docs/ats/smartrecruiters.md: HR Manager under
``/hrm/restful.svc/v2/{alias}/{Candidates|Positions|Users|Departments}/{id}`` with an
``apikey`` header; SmartRecruiters ``/sr/candidates`` and ``/sr/jobs`` (lists with ``limit``,
``pageId``/``nextPageId`` and ``updatedAfter``; one document by id) with ``X-SmartToken``.

SmartRecruiters' Webhooks Subscriptions API is there too, under
``/sr/webhooks-api/v201907/subscriptions`` (docs/ats/smartrecruiters.md), so that
``hirehook smartrecruiters subscribe demo`` runs end to end: ``POST`` creates an inactive
subscription, ``GET`` lists them (or shows one), ``PUT /{id}/activation`` POSTs the
``X-Hook-Secret`` handshake to the callback URL and activates it only if the secret is echoed
with a 200, ``POST /{id}/secret-key`` generates a signing key (the previous one stays live for
24 hours) and ``DELETE /{id}`` removes it. Once a subscription has a key, the stand-in sends it
one signed notification of its first event, retried until it is answered 2xx, as
SmartRecruiters retries.

Every id answers with a made-up document, so whatever ``hirehook send`` names can be fetched;
every ``PERIOD_S`` seconds a new SmartRecruiters candidate appears, for the poller to find.
Run it as ``python -m app.dev.demo_ats --port 8099``; it is never part of a production process.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.dev.demo import DEMO_ATS_PORT
from app.verifiers.smartrecruiters import signature_header

# The demo tenants file names these; they protect nothing but a loopback port.
HRM_API_KEY = "demo-hrmanager-api-key-for-the-local-stand-in"
HRM_ALIAS = "demo"
SR_TOKEN = "demo-smartrecruiters-token-for-the-local-stand-in"  # noqa: S105 - demo only
PERIOD_S = 30.0
_STARTED = time.time()
_PAGE = 100


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ms_date(at: float) -> str:
    # HR Manager writes dates the Microsoft JSON way (docs/ats/hrmanager.md).
    return f"/Date({int(at * 1000)})/"


def _hrm_document(kind: str, ident: str) -> dict[str, Any]:
    now = time.time()
    if kind == "Candidates":
        return {
            "Id": ident,
            "FirstName": "Ada",
            "LastName": f"Lovelace {ident}",
            "Email": f"ada.{ident}@example.com",
            "PositionList": [{"PositionId": "42", "Status": "Interview"}],
            "LastUpdated": _ms_date(now),
        }
    if kind == "Positions":
        return {"Id": ident, "Name": f"Engineer {ident}", "Status": "Published"}
    if kind == "Users":
        return {"Id": ident, "Name": f"Recruiter {ident}"}
    return {"Id": ident, "Name": f"Department {ident}"}


async def _hrm(request: Request) -> Response:
    if request.headers.get("apikey") != HRM_API_KEY:
        return _json(401, {"Message": "Authorization has been denied for this request."})
    if request.path_params["alias"] != HRM_ALIAS:
        return _json(404, {"Message": "No HTTP resource was found."})
    kind = request.path_params["kind"]
    if kind not in ("Candidates", "Positions", "Users", "Departments"):
        return _json(404, {"Message": "No HTTP resource was found."})
    return _json(200, _hrm_document(kind, request.path_params["ident"]))


def _sr_candidate(ident: str, at: float) -> dict[str, Any]:
    return {
        "id": ident,
        "internal": False,
        "firstName": "Grace",
        "lastName": f"Hopper {ident}",
        "email": f"grace.{ident}@example.com",
        "createdOn": _iso(at),
        "updatedOn": _iso(at),
        "primaryAssignment": {"job": {"id": "job-1", "title": "Compiler Engineer"}},
        "secondaryAssignments": [],
    }


def _sr_job(ident: str, at: float) -> dict[str, Any]:
    return {
        "id": ident,
        "title": f"Compiler Engineer {ident}",
        "status": "SOURCING",
        "location": {"city": "Oslo", "country": "no"},
        "createdOn": _iso(at),
        "updatedOn": _iso(at),
    }


def _since(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


async def _sr_list(request: Request) -> Response:
    if request.headers.get("x-smarttoken") != SR_TOKEN:
        return _json(401, {"message": "Invalid token"})
    kind = request.path_params["kind"]
    if kind not in ("candidates", "jobs"):
        return _json(404, {"message": "Not found"})
    # One candidate (and one job) per period since start-up, each created when it appears.
    count = int((time.time() - _STARTED) // PERIOD_S) + 1
    since = _since(request.query_params.get("updatedAfter"))
    build = _sr_candidate if kind == "candidates" else _sr_job
    items = [
        build(f"{kind[0]}{n}", at) for n in range(count) if (at := _STARTED + n * PERIOD_S) > since
    ]
    start = int(request.query_params.get("pageId") or 0)
    limit = min(int(request.query_params.get("limit") or 10), _PAGE)
    page = items[start : start + limit]
    body: dict[str, Any] = {
        "limit": limit,
        "offset": start,
        "totalFound": len(items),
        "content": page,
    }
    if start + limit < len(items):
        body["nextPageId"] = str(start + limit)
    return _json(200, body)


async def _sr_one(request: Request) -> Response:
    if request.headers.get("x-smarttoken") != SR_TOKEN:
        return _json(401, {"message": "Invalid token"})
    kind, ident = request.path_params["kind"], request.path_params["ident"]
    if kind not in ("candidates", "jobs"):
        return _json(404, {"message": "Not found"})
    build = _sr_candidate if kind == "candidates" else _sr_job
    return _json(200, build(ident, time.time()))


SUBSCRIPTIONS_PATH = "/sr/webhooks-api/v201907/subscriptions"
# [C] SmartRecruiters waits 20 s for the handshake's echo and keeps an old key live 24 h.
_HANDSHAKE_TIMEOUT_S = 20.0
_OLD_KEY_LIVE_S = 24 * 3600.0
# SmartRecruiters retries a notification for a day (1, 3, 10, 45 min ...); the stand-in keeps
# the shape and shortens the waits, so a demo sees its event within seconds.
_NOTIFY_RETRIES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class _Subscription:
    id: str
    callback_url: str
    events: list[dict[str, Any]]
    # This stand-in's own base URL, for the notifications' ``link`` to the resource.
    api_base: str
    status: str = "inactive"
    # (key, expiry); expiry None while the key is the newest.
    keys: list[tuple[str, float | None]] = field(default_factory=list)

    def live_keys(self) -> list[str]:
        now = time.time()
        return [key for key, expires in self.keys if expires is None or now < expires]

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "callbackUrl": self.callback_url,
            "events": self.events,
            "status": self.status,
        }


def _sample_notification(event_name: str) -> tuple[dict[str, Any], str]:
    """A body naming resources the stand-in serves (so enrichment can fetch them), and the
    path of the one its ``link`` points at."""
    if event_name.startswith("application."):
        return {"job_id": "j0", "candidate_id": "c0"}, "candidates/c0"
    if event_name.startswith("job."):
        return {"id": "j0"}, "jobs/j0"
    return {"id": "c0"}, "candidates/c0"


class _Subscriptions:
    """The Webhooks Subscriptions API's state: subscriptions live as long as the process."""

    def __init__(self) -> None:
        self.by_id: dict[str, _Subscription] = {}
        # Strong references: a task nobody holds may be collected before it ends.
        self._sending: set[asyncio.Task[None]] = set()

    async def collection(self, request: Request) -> Response:
        if not _sr_authorized(request):
            return _json(401, {"message": "Invalid token"})
        if request.method == "GET":
            items = [s.view() for s in self.by_id.values()]
            return _json(200, {"totalFound": len(items), "content": items})
        try:
            body = orjson.loads(await request.body())
            callback_url, events = body["callbackUrl"], body["events"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _json(400, {"message": "callbackUrl and events are required"})
        if not isinstance(callback_url, str) or not isinstance(events, list) or not events:
            return _json(400, {"message": "callbackUrl and events are required"})
        created = _Subscription(
            uuid.uuid4().hex[:16], callback_url, events, api_base=str(request.base_url)
        )
        self.by_id[created.id] = created
        return _json(201, created.view())

    async def one(self, request: Request) -> Response:
        found = self._find(request)
        if isinstance(found, Response):
            return found
        if request.method == "DELETE":
            del self.by_id[found.id]
            return Response(status_code=204)
        return _json(200, found.view())

    async def action(self, request: Request) -> Response:
        found = self._find(request)
        if isinstance(found, Response):
            return found
        match request.method, request.path_params["action"]:
            case "PUT", "activation":
                return await self._activate(found)
            case "POST", "secret-key":
                return self._new_key(found)
        return _json(405, {"message": "Method not allowed"})

    def _find(self, request: Request) -> _Subscription | Response:
        if not _sr_authorized(request):
            return _json(401, {"message": "Invalid token"})
        found = self.by_id.get(request.path_params["ident"])
        return found or _json(404, {"message": "Subscription not found"})

    async def _activate(self, sub: _Subscription) -> Response:
        secret = secrets.token_urlsafe(16)
        try:
            async with httpx.AsyncClient(timeout=_HANDSHAKE_TIMEOUT_S) as http:
                answer = await http.post(sub.callback_url, headers={"X-Hook-Secret": secret})
        except httpx.HTTPError:
            return _json(400, {"message": "Callback URL is not reachable"})
        if answer.status_code != 200 or answer.headers.get("x-hook-secret") != secret:
            return _json(400, {"message": "Handshake failed"})
        sub.status = "active"
        return Response(status_code=204)

    def _new_key(self, sub: _Subscription) -> Response:
        now = time.time()
        live = [
            (key, now + _OLD_KEY_LIVE_S if expires is None else expires)
            for key, expires in sub.keys
        ]
        sub.keys = [(key, expires) for key, expires in live if expires > now]
        if len(sub.keys) >= 16:
            return _json(400, {"message": "Too many secret keys"})
        key = secrets.token_urlsafe(32)
        sub.keys.append((key, None))
        if sub.status == "active":
            task = asyncio.create_task(self._notify(sub))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return _json(201, {"secretKey": key})

    async def _notify(self, sub: _Subscription) -> None:
        """One signed notification of the subscription's first event, retried until a 2xx
        (the key is stored by the subscriber only after this call answered)."""
        event = sub.events[0]
        name, version = str(event.get("name", "")), str(event.get("version", ""))
        payload, resource = _sample_notification(name)
        body = orjson.dumps(payload)
        event_id = f"demo-ats-{uuid.uuid4()}"
        async with httpx.AsyncClient(timeout=10) as http:
            for wait_s in _NOTIFY_RETRIES_S:
                await asyncio.sleep(wait_s)
                if sub.id not in self.by_id:
                    return
                headers = {
                    "content-type": "application/json",
                    "event-name": name,
                    "event-version": version,
                    "event-id": event_id,
                    "link": f"<{sub.api_base}sr/{resource}>; rel=self",
                    "smartrecruiters-timestamp": str(int(time.time())),
                }
                headers["smartrecruiters-signature"] = signature_header(
                    [k.encode() for k in sub.live_keys()],
                    headers["smartrecruiters-timestamp"],
                    body,
                    headers,
                )
                try:
                    answer = await http.post(sub.callback_url, content=body, headers=headers)
                except httpx.HTTPError:
                    continue
                if answer.is_success:
                    return


def _sr_authorized(request: Request) -> bool:
    return request.headers.get("x-smarttoken") == SR_TOKEN or (
        request.headers.get("authorization") == f"Bearer {SR_TOKEN}"
    )


def create_app() -> Starlette:
    """The stand-in APIs."""
    subscriptions = _Subscriptions()
    return Starlette(
        routes=[
            Route("/hrm/restful.svc/v2/{alias}/{kind}/{ident}", _hrm),
            Route(SUBSCRIPTIONS_PATH, subscriptions.collection, methods=["GET", "POST"]),
            Route(
                SUBSCRIPTIONS_PATH + "/{ident}",
                subscriptions.one,
                methods=["GET", "DELETE"],
            ),
            Route(
                SUBSCRIPTIONS_PATH + "/{ident}/{action}",
                subscriptions.action,
                methods=["PUT", "POST"],
            ),
            Route("/sr/{kind:str}", _sr_list),
            Route("/sr/{kind:str}/{ident}", _sr_one),
        ]
    )


def main() -> None:
    """Serve the stand-in APIs on loopback."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEMO_ATS_PORT)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
