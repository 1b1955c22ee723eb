"""Delivery attempts: one row per send of a record's event, for the record's story."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

# The first bytes of a destination's answer kept per attempt: enough to read its error,
# bounded whatever the destination sends.
ANSWER_MAX = 512

_ADD = text(
    """
    INSERT INTO delivery_attempt
        (record_id, tenant_id, latency_ms, status, error, answer, answer_size)
    VALUES (:record_id, :tenant_id, :latency_ms, :status, :error, :answer, :answer_size)
    """
)
_OF = text(
    """
    SELECT attempted_at, latency_ms, status, error, answer, answer_size
    FROM delivery_attempt WHERE record_id = :record_id
    ORDER BY attempted_at, id
    LIMIT :limit
    """
)
_PURGE = text(
    """
    DELETE FROM delivery_attempt WHERE id IN (
        SELECT id FROM delivery_attempt
        WHERE tenant_id = :tenant_id AND attempted_at < :before
        LIMIT :limit
    )
    """
)
_ERASE = text(
    "UPDATE delivery_attempt SET answer = NULL WHERE record_id = ANY(:ids) AND answer IS NOT NULL"
)


def attempt(
    *,
    record_id: uuid.UUID,
    tenant_id: int,
    latency_ms: int | None,
    status: int | None,
    error: str | None,
    answer: bytes | None,
) -> dict[str, Any]:
    """One attempt as :func:`add_many` writes it; ``answer`` is cut to :data:`ANSWER_MAX`
    bytes here."""
    return {
        "record_id": record_id,
        "tenant_id": tenant_id,
        "latency_ms": latency_ms,
        "status": status,
        "error": None if error is None else error[:2000],
        "answer": None if answer is None else answer[:ANSWER_MAX],
        "answer_size": None if answer is None else len(answer),
    }


async def add(
    conn: AsyncConnection,
    *,
    record_id: uuid.UUID,
    tenant_id: int,
    latency_ms: int | None,
    status: int | None,
    error: str | None,
    answer: bytes | None,
) -> None:
    """Write down one attempt; ``answer`` is cut to :data:`ANSWER_MAX` bytes here."""
    await add_many(
        conn,
        [
            attempt(
                record_id=record_id,
                tenant_id=tenant_id,
                latency_ms=latency_ms,
                status=status,
                error=error,
                answer=answer,
            )
        ],
    )


async def add_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Write down attempts made by :func:`attempt` (a batch's wave of sends: one exchange)."""
    if rows:
        await conn.execute(_ADD, list(rows) if len(rows) > 1 else rows[0])


async def of_record(
    conn: AsyncConnection, record_id: uuid.UUID, limit: int = 200
) -> list[Row[Any]]:
    """A record's attempts, oldest first (at most ``limit``)."""
    return list((await conn.execute(_OF, {"record_id": record_id, "limit": limit})).all())


async def purge(conn: AsyncConnection, *, tenant_id: int, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` of the tenant's attempts made before ``before``."""
    params = {"tenant_id": tenant_id, "before": before, "limit": limit}
    return (await conn.execute(_PURGE, params)).rowcount


async def erase(conn: AsyncConnection, record_ids: Sequence[uuid.UUID]) -> int:
    """Clear the answer bytes of the attempts of erased records; how many were cleared."""
    return (await conn.execute(_ERASE, {"ids": list(record_ids)})).rowcount
