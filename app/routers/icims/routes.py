"""The iCIMS routes the registry mounts: the event route and the OAuth token endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from app.routers.icims import events, token

ROUTERS: tuple[APIRouter, ...] = (events.router, token.router)
