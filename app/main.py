"""The ASGI application: the only module that mounts routers.

The sources' routers, path prefixes and OpenAPI tags come from the registry (app.sources): a
source is added there, not here.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app import sources
from app.admin import keys
from app.platform.errors import AppError
from app.platform.runtime import freeze_startup_heap
from app.platform.settings import Settings, get_settings
from app.routers import admin, console, health, openapi
from app.routers.common import http_refusal, render, render_default, request_invalid
from app.routers.dispatch import EventDispatch
from app.routers.request_context import RequestContext


def create_app(settings: Settings | None = None, *, operator: keys.Caller | None = None) -> FastAPI:
    """Build the app; services are created in the lifespan so each worker process owns its own.

    ``operator``: the app is driven in process by the host's own operator (the CLI without
    ``--url``), who holds the settings' credentials already; the admin API takes its requests
    as this caller's without a key. A served app never has one."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = sources.create_services(settings)
        app.state.services = services
        freeze_startup_heap()
        try:
            yield
        finally:
            await services.close()

    # /docs and /redoc load Swagger UI and ReDoc from files installed with fastapi-offline,
    # not from a CDN: the page must work where the API host has no internet access.
    app = FastAPIOffline(
        title="Hirehook",
        summary="Receive, verify, deduplicate and enrich events from Applicant Tracking Systems.",
        description="Point your ATS at the event URL of its section. Each operation documents "
        "its request body with one example per event type, every answer the sender can get "
        "and the authentication it needs.",
        version="0.1.0",
        lifespan=lifespan,
        static_url="/docs-assets",
        # Every route's operationId is decided here, once: <tag>_<route name>.
        generate_unique_id_function=openapi.operation_id,
        # FastAPI's own OpenTelemetry hooks look for global providers on every request, which
        # Hirehook never installs (its metrics are Prometheus', app.platform.metrics): off, so no
        # request pays for the look.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    # Routes render their own refusals (app.routers.common.error_route); these catch what
    # happens outside any route, in the default shape.
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return render(request, exc, render_default)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return render(request, request_invalid(exc), render_default)

    # A path no route serves (404) or a method it does not take (405): the same error shape
    # as every other refusal, not FastAPI's {"detail": ...}.
    @app.exception_handler(HTTPException)
    async def _unrouted(request: Request, exc: HTTPException) -> Response:
        return render(request, http_refusal(exc), render_default)

    # The request context, then the event routes' dispatch, come first, above the stack
    # Starlette and FastAPI build (their server-error, telemetry and body-limit layers, the
    # exception middleware, the router): an event route needs none of those layers, and each
    # costs every request a frame or a send wrapper. The request context answers the 500 of
    # an unexpected exception itself where nothing below it did.
    build_stack = app.build_middleware_stack

    def front_stack() -> ASGIApp:
        dispatch = EventDispatch(build_stack(), paths=sources.paths())
        return RequestContext(
            dispatch, paths=sources.paths(), tenant_in_path=sources.tenant_in_path()
        )

    app.build_middleware_stack = front_stack  # type: ignore[method-assign]
    # Starlette tries routes in order, and every try costs: the event routes, which take
    # nearly all the traffic, come first; health checks, the admin API and the docs after.
    for module in sources.routers():
        for router in importlib.import_module(module).ROUTERS:
            app.include_router(router)
    app.include_router(health.router)
    app.include_router(admin.router)
    if operator is not None:

        async def _operator(request: Request) -> keys.Caller:
            return operator

        app.dependency_overrides[admin.authenticate] = _operator
    # Not in the OpenAPI document: pages for people, not an API.
    app.include_router(console.router)
    tags = sources.openapi_tags()
    app.openapi = lambda: openapi.build(app, tags)  # type: ignore[method-assign]
    return app
