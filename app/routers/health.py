"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from app.platform.db import DB_ERRORS
from app.platform.metrics import exposition, refresh_backlog
from app.routers.common import ServicesDep
from app.services import Services
from app.store import health as health_sql

# Tagged apart from the event routes: these are for load balancers, not for senders.
router = APIRouter(tags=["Operations"])


@router.get("/health/live", name="check_liveness")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    postgres: bool
    redis: bool


def _unavailable_example(*, postgres: bool, redis: bool) -> dict[str, Any]:
    """A 503's example for the OpenAPI document, as the route builds it."""
    value = Readiness(status="unavailable", postgres=postgres, redis=redis).model_dump()
    return {"content": {"application/json": {"example": value}}}


async def _database_answers(services: Services) -> bool:
    try:
        async with asyncio.timeout(services.settings.db_connect_timeout_s):
            async with services.engine.connect() as conn:
                await health_sql.ping(conn)
    except DB_ERRORS:
        return False
    return True


@router.get(
    "/health/ready",
    name="check_readiness",
    responses={
        200: {"model": Readiness, "description": "PostgreSQL and Redis both answer."},
        503: {
            "model": Readiness,
            "description": "PostgreSQL or Redis is unreachable.",
            **_unavailable_example(postgres=True, redis=False),
        },
    },
)
async def ready(services: ServicesDep) -> JSONResponse:
    """PostgreSQL and Redis both answer."""
    database = await _database_answers(services)
    redis = await services.queue.ping()
    ok = database and redis
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "postgres": database, "redis": redis},
        status_code=200 if ok else 503,
    )


@router.get(
    "/health/intake",
    name="check_intake",
    responses={
        200: {"model": Readiness, "description": "PostgreSQL answers: events can be recorded."},
        503: {
            "model": Readiness,
            "description": "PostgreSQL is unreachable.",
            **_unavailable_example(postgres=False, redis=True),
        },
    },
)
async def intake(services: ServicesDep) -> JSONResponse:
    """This process can record events: PostgreSQL answers. Redis is reported, not required:
    without it events are still committed and acknowledged (the sweeper publishes them later),
    so a load balancer's readiness check belongs here, not on ``/health/ready``."""
    database = await _database_answers(services)
    redis = await services.queue.ping()
    return JSONResponse(
        {"status": "ok" if database else "unavailable", "postgres": database, "redis": redis},
        status_code=200 if database else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition of the API's counters (every process's, with several uvicorn
    workers) and the cluster's backlog."""
    await refresh_backlog(services.engine, services.settings.db_request_timeout_s)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
