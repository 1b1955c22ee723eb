"""Stand-in HR Manager and SmartRecruiters APIs for ``hirehook dev``, on loopback only.

With them the demo tenant's events are enriched end to end (candidates, positions, jobs are
fetched) and its polled SmartRecruiters connection finds new candidates, without any real ATS
account. Shapes follow ATS-FACTS sections 2 and 3: HR Manager under
``/hrm/restful.svc/v2/{alias}/{Candidates|Positions|Users|Departments}/{id}`` with an
``apikey`` header; SmartRecruiters ``/sr/candidates`` and ``/sr/jobs`` (lists with ``limit``,
``pageId``/``nextPageId`` and ``updatedAfter``; one document by id) with ``X-SmartToken``.

Every id answers with a made-up document, so whatever ``hirehook send`` names can be fetched;
every ``PERIOD_S`` seconds a new SmartRecruiters candidate appears, for the poller to find.
Run it as ``python -m app.demo_ats --port 8099``; it is never part of a production process.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo import DEMO_ATS_PORT

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
    # HR Manager writes dates the Microsoft JSON way (ATS-FACTS section 2).
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


def create_app() -> Starlette:
    """The stand-in APIs."""
    return Starlette(
        routes=[
            Route("/hrm/restful.svc/v2/{alias}/{kind}/{ident}", _hrm),
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
