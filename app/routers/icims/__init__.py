"""iCIMS Integration Events: the event route (``events``), its authentication (``auth``), its
error standard (``errors``) and the OAuth token endpoint iCIMS fetches tokens from (``token``).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.routers.icims import events, token

ROUTERS: tuple[APIRouter, ...] = (events.router, token.router)
