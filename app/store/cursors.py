"""Poll cursors: how far a poller has read one resource of one connection.

A poll page's records and its cursor are written in one transaction, so a poll that dies
midway resumes from the last page it committed.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_GET = text(
    "SELECT position FROM poll_cursor WHERE connection_id = :connection_id AND resource = :resource"
)
_ADVANCE = text(
    """
    INSERT INTO poll_cursor (connection_id, resource, position, polled_at)
    VALUES (:connection_id, :resource, CAST(:position AS jsonb), now())
    ON CONFLICT (connection_id, resource)
    DO UPDATE SET position = excluded.position, polled_at = now(), updated_at = now()
    """
)


async def get(conn: AsyncConnection, connection_id: int, resource: str) -> dict[str, Any] | None:
    """The stored position, or None before the first poll."""
    row = (await conn.execute(_GET, {"connection_id": connection_id, "resource": resource})).first()
    return None if row is None else dict(row.position)


async def advance(
    conn: AsyncConnection, connection_id: int, resource: str, position: dict[str, Any]
) -> None:
    """Store ``position`` (in the caller's transaction, beside the page's records)."""
    await conn.execute(
        _ADVANCE,
        {
            "connection_id": connection_id,
            "resource": resource,
            "position": orjson.dumps(position).decode(),
        },
    )
