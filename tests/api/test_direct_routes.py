"""Event routes called straight from the request (app.routers.common.direct_handler), and the
metric children the request path looks up once (app.platform.metrics.Children)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app import sources
from app.platform.metrics import EVENTS, Children
from app.routers.common import DefaultRoute, ServicesDep, direct_handler, get_services


class _Body(BaseModel):
    name: str


def _services(max_body_bytes: int = 1_000) -> Any:
    return SimpleNamespace(
        settings=SimpleNamespace(max_body_bytes=max_body_bytes),
        refusals=SimpleNamespace(note=lambda *args, **kwargs: None),
        engine=None,
        tag="app",
    )


_ROUTER = APIRouter(route_class=DefaultRoute)


@_ROUTER.post("/direct/{tenant}/events/{token}")
async def _direct(tenant: str, token: str, request: Request, services: ServicesDep) -> Response:
    body = await request.body()
    tag = getattr(services, "tag", "")
    return Response(f"{tenant} {token} {tag} {len(body)}".encode())


@_ROUTER.post("/query/{tenant}")
async def _query(tenant: str, request: Request, services: ServicesDep, n: int = 1) -> Response:
    return Response(f"{tenant} {n}".encode())


@_ROUTER.post("/model")
async def _model(body: _Body, services: ServicesDep) -> Response:
    return Response(body.name.encode())


@_ROUTER.get("/plain")
async def _plain(request: Request) -> dict[str, str]:
    return {"answer": "serialized by FastAPI"}


def _app() -> FastAPI:
    app = FastAPI()
    app.include_router(_ROUTER)
    app.state.services = _services()
    return app


def _route(path: str) -> APIRoute:
    [route] = [r for r in _ROUTER.routes if isinstance(r, APIRoute) and r.path == path]
    return route


def test_only_routes_asking_for_path_text_the_request_and_services_are_called_directly() -> None:
    assert direct_handler(_route("/direct/{tenant}/events/{token}")) is not None
    # A query parameter, a body model or an answer FastAPI serializes: FastAPI's own handler.
    assert direct_handler(_route("/query/{tenant}")) is None
    assert direct_handler(_route("/model")) is None
    assert direct_handler(_route("/plain")) is None


def test_every_event_route_taking_no_other_parameters_is_called_directly() -> None:
    direct = {
        route.path
        for module in sources.routers()
        for router in importlib.import_module(module).ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and direct_handler(route) is not None
    }
    assert {
        "/v1/keldair/{tenant}/events",
        "/v1/keldair/{tenant}/events/{token}",
        "/v1/icims/events",
        "/v1/smartrecruiters/{tenant}/events",
        "/v1/cloud-elements/{tenant}/events",
    } <= direct


async def _post(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, **kwargs)


async def test_a_direct_route_gets_its_path_parameters_request_and_services() -> None:
    answer = await _post(_app(), "/direct/acme/events/t%20k", content=b"12345")
    assert (answer.status_code, answer.text) == (200, "acme t k app 5")


async def test_a_direct_route_keeps_the_body_cap() -> None:
    app = _app()
    app.state.services = _services(max_body_bytes=4)
    answer = await _post(app, "/direct/acme/events/tk", content=b"12345")
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


async def test_an_overridden_services_dependency_is_still_honoured() -> None:
    app = _app()
    other = _services()
    other.tag = "override"
    app.dependency_overrides[get_services] = lambda: other
    answer = await _post(app, "/direct/acme/events/tk", content=b"")
    assert answer.text == "acme tk override 0"


async def test_other_routes_are_still_solved_by_fastapi() -> None:
    app = _app()
    assert (await _post(app, "/query/acme?n=3")).text == "acme 3"
    refused = await _post(app, "/query/acme?n=three")
    assert refused.status_code == 400
    assert (await _post(app, "/model", json={"name": "x"})).text == "x"


@pytest.mark.parametrize("values", [("keldair", "applicant.hired", "recorded")])
def test_children_are_the_metrics_own_and_looked_up_once(values: tuple[str, ...]) -> None:
    children = Children(EVENTS)
    child = children(*values)
    assert child is EVENTS.labels(*values)
    assert children(*values) is child
    before = child._value.get()
    children(*values).inc()
    assert EVENTS.labels(*values)._value.get() == before + 1
