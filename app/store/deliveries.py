"""Deliveries owed to a tenant's destination, and the destination itself."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.driver import fetch_any

_CREATE_MANY = text(
    """
    INSERT INTO delivery (record_id, tenant_id, event_type, body)
    SELECT d.record_id, d.tenant_id, d.event_type, d.body
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tenant_ids AS bigint[]),
                CAST(:event_types AS text[]), CAST(:bodies AS bytea[]))
         AS d(record_id, tenant_id, event_type, body)
    WHERE EXISTS (SELECT 1 FROM destination WHERE tenant_id = d.tenant_id AND enabled)
    ORDER BY d.record_id
    ON CONFLICT (record_id) DO NOTHING
    RETURNING record_id
    """
)
_DESTINATION = text("SELECT url, secret FROM destination WHERE tenant_id = :tenant_id AND enabled")


async def create_many(
    conn: AsyncConnection, owed: list[tuple[uuid.UUID, int, str, bytes]]
) -> list[uuid.UUID]:
    """Owe each (record id, tenant id, event type, body) to its tenant's destination, if it
    has an enabled one; the record ids owed now (one record's event, or a batch's)."""
    if not owed:
        return []
    params = {
        "ids": [o[0] for o in owed],
        "tenant_ids": [o[1] for o in owed],
        "event_types": [o[2] for o in owed],
        "bodies": [o[3] for o in owed],
    }
    # Once per finishing transaction: past SQLAlchemy's execution once it has begun.
    return [row[0] for row in await fetch_any(conn, _CREATE_MANY, params)]


async def destination(conn: AsyncConnection, tenant_id: int) -> Row[Any] | None:
    """The tenant's enabled destination: ``url`` and the encrypted ``secret``."""
    rows = await fetch_any(conn, _DESTINATION, {"tenant_id": tenant_id})
    return rows[0] if rows else None
