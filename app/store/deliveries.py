"""Deliveries owed to a tenant's destination, and the destination itself."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

_CREATE = text(
    """
    INSERT INTO delivery (record_id, tenant_id, event_type, body)
    SELECT :id, :tenant_id, :event_type, :body
    WHERE EXISTS (SELECT 1 FROM destination WHERE tenant_id = :tenant_id AND enabled)
    ON CONFLICT (record_id) DO NOTHING
    RETURNING record_id
    """
)
_DESTINATION = text("SELECT url, secret FROM destination WHERE tenant_id = :tenant_id AND enabled")


async def create(
    conn: AsyncConnection, *, record_id: uuid.UUID, tenant_id: int, event_type: str, body: bytes
) -> bool:
    """Owe ``body`` to the tenant's destination if it has an enabled one; True if owed now."""
    created = await conn.execute(
        _CREATE,
        {"id": record_id, "tenant_id": tenant_id, "event_type": event_type, "body": body},
    )
    return created.first() is not None


async def destination(conn: AsyncConnection, tenant_id: int) -> Row[Any] | None:
    """The tenant's enabled destination: ``url`` and the encrypted ``secret``."""
    return (await conn.execute(_DESTINATION, {"tenant_id": tenant_id})).first()
