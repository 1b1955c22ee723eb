"""The event routes called straight from the ASGI scope (app.routers.dispatch): the same answers
as through Starlette's and FastAPI's layers, which are left to everything else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import BaseRoute

from app import sources
from app.main import create_app
from app.platform.settings import Settings
from app.routers import common, keldair
from app.routers.common import DefaultRoute
from app.routers.dispatch import _may_serve, event_routes
from app.services import Services
from tests.support import icims
from tests.support.app import add_connection
from tests.support.keldair import OTHER, SECRET, URL, event, post, signed

# FastAPI's exit-stack middleware, under the exception middleware and above the router, puts
# this in every request's scope it sees; a request dispatched from the fast path never has it.
_STACK_KEY = "fastapi_middleware_astack"


@pytest.fixture
async def app(settings: Settings, services: Services) -> AsyncIterator[FastAPI]:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    await icims.add_icims(services)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # An unexpected exception is answered 500 by Starlette's outermost middleware and then
    # raised again, for the server to log: the client sees the 500.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hirehook.test") as client:
        yield client


@pytest.fixture
def stacked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each request a route class handles, whether it came down FastAPI's stack."""
    seen: list[bool] = []
    capped = common.capped

    def recording(request: Request) -> Request:
        seen.append(_STACK_KEY in request.scope)
        return capped(request)

    monkeypatch.setattr(common, "capped", recording)
    return seen


def _acks(source: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "hirehook_ack_seconds_count", {"source": source, "status": status}
    )
    return value or 0.0


async def test_an_event_route_is_dispatched_without_the_stack_below_the_request_context(
    client: httpx.AsyncClient, app: FastAPI, stacked: list[bool]
) -> None:
    assert (await post(client, event())).status_code == 200
    assert stacked == [False]
    # A test's dependency override is FastAPI's to solve: that request goes down the stack.
    app.dependency_overrides[_unused] = _unused
    assert (await post(client, event())).status_code == 200
    assert stacked == [False, True]


def _unused() -> None:
    """A dependency no route asks for, overridden to turn the fast path off."""


async def test_an_accepted_event_and_its_duplicate(
    client: httpx.AsyncClient, stacked: list[bool]
) -> None:
    acks = _acks("keldair", "200")
    payload = event("evt_fast")
    first = await post(client, payload, msg_id="msg_fast")
    assert first.status_code == 200
    assert first.json() == {
        "status": "accepted",
        "record_id": first.headers["hirehook-record-id"],
        "event_id": "evt_fast",
    }
    assert "hirehook-duplicate" not in first.headers
    body = orjson.dumps(payload)
    again = await client.post(
        URL, content=body, headers=signed(body, msg_id="msg_fast") | {"x-request-id": "req-42"}
    )
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.headers["x-request-id"] == "req-42"
    assert len(first.headers["x-request-id"]) == 32
    assert _acks("keldair", "200") == acks + 2
    assert stacked == [False, False]


async def test_keldair_refusals_in_the_default_shape(
    client: httpx.AsyncClient, stacked: list[bool]
) -> None:
    acks = _acks("keldair", "401")
    wrong = await post(client, event(), secret=OTHER)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert wrong.headers["x-request-id"]
    assert _acks("keldair", "401") == acks + 1

    huge = event(data={"id": "ap_1", "notes": "x" * (1024 * 1024)})
    oversize = await post(client, huge)
    assert oversize.status_code == 413
    assert oversize.json()["error"]["code"] == "payload_too_large"
    assert oversize.headers["connection"] == "close"

    body = b'{"id": "evt", "type": '
    bad = await client.post(URL, content=body, headers=signed(body))
    assert bad.status_code == 400
    assert "not valid UTF-8 JSON" in bad.json()["error"]["message"]
    assert stacked == [False, False, False]


async def test_icims_refusals_in_its_error_standard(
    client: httpx.AsyncClient, stacked: list[bool]
) -> None:
    plain = {"content-type": "application/json"}
    body = orjson.dumps(icims.payload("WorkFlowStatusChangeEvent"))
    wrong = await client.post(
        icims.URL, content=body, headers=plain | icims.basic_header(password="nope")
    )
    assert wrong.status_code == 401
    assert "could not be authenticated" in icims.error_of(wrong)["userMessage"]

    # iCIMS's error standard knows no 413: a body over the cap is its 400.
    huge = b" " * (1024 * 1024 + 1)
    oversize = await client.post(icims.URL, content=huge, headers=plain | icims.basic_header())
    assert oversize.status_code == 400
    assert "larger than this endpoint accepts" in icims.error_of(oversize)["debugErrorMessage"]

    bad = await client.post(
        icims.URL, content=b'{"customerId": "1234", ', headers=plain | icims.basic_header()
    )
    assert bad.status_code == 400
    assert "not valid UTF-8 JSON" in icims.error_of(bad)["debugErrorMessage"]
    assert stacked == [False, False, False]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", URL, 405, "method_not_allowed"),
        ("GET", icims.URL, 405, "method_not_allowed"),
        ("POST", "/v1/keldair/nope/extra/path", 404, "not_found"),
        ("POST", "/v1/icims/nope", 404, "not_found"),
    ],
)
async def test_what_no_event_route_takes_is_refused_as_before(
    client: httpx.AsyncClient, stacked: list[bool], method: str, path: str, status: int, code: str
) -> None:
    answer = await client.request(method, path, headers={"x-request-id": "req-7"})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert answer.headers["x-request-id"] == "req-7"
    if status == 405:
        assert answer.headers["allow"] == "POST"
    assert stacked == []


async def test_an_unexpected_exception_is_still_a_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, stacked: list[bool]
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(keldair, "_record", broken)
    acks = _acks("keldair", "500")
    answer = await post(client, event())
    assert answer.status_code == 500
    assert answer.text == "Internal Server Error"
    assert "unexpected" not in answer.text
    # Answered under the request context: the sender can quote its request id.
    assert len(answer.headers["x-request-id"]) == 32
    assert _acks("keldair", "500") == acks + 1
    assert stacked == [False]


async def test_an_unexpected_exception_down_the_stack_is_a_500_with_the_request_id(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(keldair, "_record", broken)
    app.dependency_overrides[_unused] = _unused
    body = orjson.dumps(event())
    answer = await client.post(
        URL, content=body, headers=signed(body) | {"x-request-id": "req-500"}
    )
    assert answer.status_code == 500
    assert answer.text == "Internal Server Error"
    assert answer.headers["x-request-id"] == "req-500"


async def test_an_event_request_passes_none_of_starlettes_outer_middleware(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starlette's server-error middleware and FastAPI's telemetry and body-limit layers sit
    above the user middleware; an event route needs none of them (its route class renders
    every refusal, the request context answers the unexpected 500)."""
    entered: list[str] = []
    original = ServerErrorMiddleware.__call__

    async def counting(self: ServerErrorMiddleware, scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope.get("path", scope["type"]))
        await original(self, scope, receive, send)

    monkeypatch.setattr(ServerErrorMiddleware, "__call__", counting)
    assert (await post(client, event())).status_code == 200
    assert entered == []
    assert (await client.get("/health/live")).status_code == 200
    assert entered == ["/health/live"]


async def test_hr_managers_route_reads_its_event_query_from_the_fast_path(
    client: httpx.AsyncClient, stacked: list[bool]
) -> None:
    """HR Manager's ``?event=`` is read by the route itself, so it is dispatched like the
    others, and refused as FastAPI refused it when it was a declared query parameter."""
    answer = await client.post("/v1/hrmanager/acme/events?event=x", content=b"{}")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "missing_signature"
    long = await client.post(
        "/v1/hrmanager/acme/events", params={"event": "e" * 256}, content=b"{}"
    )
    assert long.status_code == 400
    assert long.json()["error"] == {
        "code": "bad_request",
        "message": "The request is not valid: query.event: String should have at most 255 "
        "characters.",
    }
    assert stacked == [False, False]


async def _endpoint(tenant: str, request: Request) -> Response:
    return Response(tenant.encode())


def test_a_source_s_routes_end_before_one_the_router_would_try_first() -> None:
    def app(*routers: APIRouter) -> list[BaseRoute]:
        built = FastAPI()
        for router in routers:
            built.include_router(router)
        return built.router.routes

    events = APIRouter(route_class=DefaultRoute)
    events.post("/v1/keldair/{tenant}/events")(_endpoint)
    catch_all = APIRouter()
    catch_all.post("/v1/{anything}/events")(_endpoint)
    paths = {"/v1/keldair/": "keldair", "/v1/icims/": "icims"}

    assert [r.path for r, _ in event_routes(app(events, catch_all), paths)["keldair"]] == [
        "/v1/keldair/{tenant}/events"
    ]
    # Tried first, the catch-all would take /v1/keldair/acme/events and /v1/icims/x/events.
    assert event_routes(app(catch_all, events), paths) == {"keldair": (), "icims": ()}
    # Included under a prefix, the route's own template is not the path it serves.
    prefixed = APIRouter(route_class=DefaultRoute)
    prefixed.post("/{tenant}/events")(_endpoint)
    built = FastAPI()
    built.include_router(prefixed, prefix="/v1/keldair")
    assert event_routes(built.router.routes, paths)["keldair"] == ()


def test_routers_no_event_path_can_reach_are_left_out_unbuilt(app: FastAPI) -> None:
    """The admin API's and the console's routers cannot take a path under an event prefix:
    their routes' contexts (FastAPI builds their parameters' models) are not built for it."""
    every = list(sources.paths())
    left_out = {
        route.original_router.prefix  # type: ignore[attr-defined]
        for route in app.router.routes
        if not _may_serve(route, every)
    }
    assert left_out == {"/v1/admin", "/console"}
    found = event_routes(app.router.routes, sources.paths())
    assert {source: len(routes) for source, routes in found.items()}["keldair"] == 2
