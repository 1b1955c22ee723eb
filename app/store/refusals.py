"""Refused requests, counted per minute, tenant, source, status, reason and address."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

_ADD = text(
    """
    INSERT INTO refusal AS r (minute, tenant, source, status, reason, address, count, last_at)
    SELECT * FROM unnest(CAST(:minutes AS timestamptz[]), CAST(:tenants AS text[]),
                         CAST(:sources AS text[]), CAST(:statuses AS smallint[]),
                         CAST(:reasons AS text[]), CAST(:addresses AS text[]),
                         CAST(:counts AS int[]), CAST(:lasts AS timestamptz[]))
    ON CONFLICT (minute, tenant, source, status, reason, address) DO UPDATE
    SET count = r.count + excluded.count, last_at = greatest(r.last_at, excluded.last_at)
    """
)
_LIST = text(
    """
    SELECT minute, tenant, source, status, reason, address, count AS n, last_at FROM refusal
    WHERE minute >= :since
      AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
      AND (CAST(:source AS text) IS NULL OR source = :source)
      AND (CAST(:status AS smallint) IS NULL OR status = :status)
      AND (CAST(:address AS text) IS NULL OR address = :address)
    ORDER BY minute DESC, count DESC, id
    LIMIT :limit
    """
)
_PURGE = text(
    """
    DELETE FROM refusal WHERE id IN (SELECT id FROM refusal WHERE minute < :before LIMIT :limit)
    """
)


@dataclass(frozen=True, slots=True)
class Counted:
    """Refusals of one key within one minute."""

    minute: datetime
    tenant: str
    source: str
    status: int
    reason: str
    address: str
    count: int
    last_at: datetime


async def add(conn: AsyncConnection, counted: Sequence[Counted]) -> None:
    """Add ``counted`` to the stored counts: one statement, whatever their number."""
    if not counted:
        return
    await conn.execute(
        _ADD,
        {
            "minutes": [c.minute for c in counted],
            "tenants": [c.tenant for c in counted],
            "sources": [c.source for c in counted],
            "statuses": [c.status for c in counted],
            "reasons": [c.reason for c in counted],
            "addresses": [c.address for c in counted],
            "counts": [c.count for c in counted],
            "lasts": [c.last_at for c in counted],
        },
    )


async def listed(
    conn: AsyncConnection,
    *,
    since: datetime,
    tenant: str | None = None,
    source: str | None = None,
    status: int | None = None,
    address: str | None = None,
    limit: int = 200,
) -> list[Row[Any]]:
    """Counted refusals from ``since`` on, newest minute first (the count as ``n``)."""
    params = {
        "since": since,
        "tenant": tenant,
        "source": source,
        "status": status,
        "address": address,
        "limit": limit,
    }
    return list((await conn.execute(_LIST, params)).all())


async def purge(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` counts of minutes before ``before``."""
    return (await conn.execute(_PURGE, {"before": before, "limit": limit})).rowcount
