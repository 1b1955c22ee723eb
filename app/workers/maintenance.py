"""The privacy maintenance cron job: partitions, retention purge, clean-up
(app/admin/privacy.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from app.admin.privacy import maintain
from app.services import Services

log = structlog.get_logger(__name__)


async def privacy_maintenance(ctx: dict[str, Any]) -> dict[str, Any]:
    """One maintenance run; ``unique`` in the cron keeps it to one worker at a time."""
    services: Services = ctx["services"]
    report = await maintain(services.engine, services.settings)
    summary = dataclasses.asdict(report)
    log.info("privacy.maintenance", **summary)
    return summary
