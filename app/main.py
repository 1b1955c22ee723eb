"""The ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from app import registry
from app.errors import AppError, renderer_for
from app.metrics import REJECTED
from app.routers import health
from app.services import Services
from app.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; services are created in the lifespan so each worker process owns its own."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="Hirehook",
        summary="Receive, verify, deduplicate and enrich events from Applicant Tracking Systems.",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        REJECTED.labels(str(exc.status)).inc()
        if exc.status >= 500:
            log.warning(
                "request.failed", path=request.url.path, status=exc.status, detail=exc.debug_message
            )
        return renderer_for(request)(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        error = AppError(
            400, "The request is not valid: " + "; ".join(parts) + ".", code="bad_request"
        )
        return renderer_for(request)(error)

    app.include_router(health.router)
    for router in registry.ROUTERS:
        app.include_router(router)
    return app
