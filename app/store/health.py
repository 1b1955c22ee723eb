"""The readiness probe's one statement."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_PING = text("SELECT 1")


async def ping(conn: AsyncConnection) -> None:
    """Raise unless the database answers a trivial query."""
    await conn.execute(_PING)
