"""The sources this build knows. Adding one: a router, a schema module, an API client, a worker
handler, and a line here; no core module changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from app.clients import hrmanager as hrmanager_client
from app.clients import icims as icims_client
from app.clients import smartrecruiters as smartrecruiters_client
from app.clients.budget import Limits
from app.routers import icims, keldair
from app.schemas import icims_connection
from app.workers import hrmanager as hrmanager_worker
from app.workers import icims as icims_worker
from app.workers import keldair as keldair_worker
from app.workers import smartrecruiters as smartrecruiters_worker
from app.workers.context import RecordHandler

ROUTERS: list[APIRouter] = [keldair.router, icims.router]

HANDLERS: dict[str, RecordHandler] = {
    keldair.SOURCE: keldair_worker.handle,
    icims.SOURCE: icims_worker.handle,
    hrmanager_client.SOURCE: hrmanager_worker.handle,
    smartrecruiters_client.SOURCE: smartrecruiters_worker.handle,
}

# Checks run on a connection's options and secrets when the tenants file is loaded; each raises
# ValueError naming the setting at fault (never its value).
CONNECTION_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    icims.SOURCE: icims_connection.check,
}

# Each ATS's published API limits; a connection's options.limits override them.
LIMITS: dict[str, Limits] = {
    icims.SOURCE: icims_client.DEFAULT_LIMITS,
    hrmanager_client.SOURCE: hrmanager_client.DEFAULT_LIMITS,
    smartrecruiters_client.SOURCE: smartrecruiters_client.DEFAULT_LIMITS,
}
