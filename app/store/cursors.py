"""Poll cursors: how far a poller has read one resource of one connection, and the lock that
lets one poll of a connection run at a time.

A poll page's records and its cursor are written in one transaction, so a poll that dies
midway resumes from the last page it committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_GET = text(
    "SELECT position FROM poll_cursor WHERE connection_id = :connection_id AND resource = :resource"
)
_POSITIONS = text(
    "SELECT connection_id, resource, position, polled_at FROM poll_cursor "
    "WHERE connection_id = ANY(:ids)"
)
# A session-level advisory lock, held on a connection of its own for a whole poll while the
# pages commit on others: a row lock (SELECT ... FOR UPDATE) would have to live in one long
# transaction, and then no page could commit before the poll ends. PostgreSQL drops the lock
# when the session ends, so a poller that dies (killed, lost its network) frees it.
# Two-int form: a namespace ("poll" in ASCII) and the connection id; an id past 2**31 shares
# its lock with a smaller one, which only ever makes two polls take turns.
_LOCK_SPACE = 0x706F6C6C
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:space, :key), pg_backend_pid()")
_UNLOCK = text("SELECT pg_advisory_unlock(:space, :key)")
_HELD_BY = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND classid::bigint = :space AND objid::bigint = :key AND pid = :pid
    )
    """
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


async def positions(
    conn: AsyncConnection, connection_ids: Sequence[int]
) -> dict[tuple[int, str], tuple[dict[str, Any], datetime | None]]:
    """Every stored (position, polled_at) of these connections, by (connection, resource)."""
    if not connection_ids:
        return {}
    rows = await conn.execute(_POSITIONS, {"ids": list(connection_ids)})
    return {(r.connection_id, r.resource): (dict(r.position), r.polled_at) for r in rows}


def _lock_params(connection_id: int) -> dict[str, int]:
    return {"space": _LOCK_SPACE, "key": connection_id & 0x7FFFFFFF}


async def try_lock(conn: AsyncConnection, connection_id: int) -> int | None:
    """Take the poll lock of a connection for this session, if nobody holds it; the session's
    backend pid if it was taken, else None.

    ``conn`` must be in autocommit: inside a transaction the session would sit idle in it for
    the whole poll and be cut off by ``idle_in_transaction_session_timeout``.
    """
    row = (await conn.execute(_TRY_LOCK, _lock_params(connection_id))).one()
    return int(row[1]) if row[0] else None


async def lock_held(conn: AsyncConnection, connection_id: int, pid: int) -> bool:
    """Whether the session ``pid`` still holds the connection's poll lock (it is lost if that
    session died, and another poll may then have taken it)."""
    params = {**_lock_params(connection_id), "pid": pid}
    return bool((await conn.execute(_HELD_BY, params)).scalar_one())


async def unlock(conn: AsyncConnection, connection_id: int) -> bool:
    """Release the poll lock taken by :func:`try_lock` on this session."""
    return bool((await conn.execute(_UNLOCK, _lock_params(connection_id))).scalar_one())
