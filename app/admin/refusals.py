"""Refused requests kept for operators (no body, no secret)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from app.admin import schemas as s
from app.services import Services
from app.store import refusals as refusals_sql

log = structlog.get_logger(__name__)


async def list_refusals(
    services: Services,
    *,
    since: datetime | None = None,
    tenant: str | None = None,
    source: str | None = None,
    status: int | None = None,
    address: str | None = None,
    limit: int = 200,
) -> list[s.RefusalView]:
    """Refused requests (401, 413, 429) counted per minute, tenant, source, reason and address,
    newest first, from ``since`` (default: the last 24 hours; kept 7 days). What this process
    counted and has not written yet is written first (app.intake.refusals)."""
    await services.refusals.flush(services.engine)
    since = since or datetime.now(UTC) - timedelta(days=1)
    async with services.engine.connect() as conn:
        rows = await refusals_sql.listed(
            conn,
            since=since,
            tenant=tenant,
            source=source,
            status=status,
            address=address,
            limit=limit,
        )
    return [
        s.RefusalView(
            minute=row.minute,
            tenant=row.tenant,
            source=row.source,
            status=row.status,
            reason=row.reason,
            address=row.address,
            count=row.n,
            last_at=row.last_at,
        )
        for row in rows
    ]
