"""The sources this build knows. Adding one: a router, a schema module, a worker handler, and a
line here; no core module changes."""

from __future__ import annotations

from fastapi import APIRouter

from app.routers import keldair
from app.workers import keldair as keldair_worker
from app.workers.context import RecordHandler

ROUTERS: list[APIRouter] = [keldair.router]

HANDLERS: dict[str, RecordHandler] = {
    keldair.SOURCE: keldair_worker.handle,
}
