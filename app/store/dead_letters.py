"""Dead letters: records a stage gave up on, kept apart by kind so the right person acts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, Select, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import DeadLetter, RecordKey, Tenant

Stage = Literal["intake", "enrichment", "delivery"]
FailureKind = Literal["configuration", "pipeline"]

_BURY = text(
    """
    INSERT INTO dead_letter (record_id, tenant_id, source, stage, kind, reason, detail, attempts)
    SELECT id, tenant_id, source, :stage, :kind, :reason, :detail, :attempts
    FROM record WHERE id = :record_id
    ON CONFLICT (record_id, stage) WHERE resolved_at IS NULL DO NOTHING
    """
)


async def bury(
    conn: AsyncConnection,
    *,
    record_id: uuid.UUID,
    stage: Stage,
    kind: FailureKind,
    reason: str,
    detail: str,
    attempts: int,
) -> None:
    """Record that ``stage`` gave up on a record (once while the letter is open)."""
    await conn.execute(
        _BURY,
        {
            "record_id": record_id,
            "stage": stage,
            "kind": kind,
            "reason": reason,
            "detail": detail[:2000],
            "attempts": attempts,
        },
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters a command applies to; ids win over the other filters."""

    ids: Sequence[int] = ()
    kind: FailureKind | None = None
    stage: Stage | None = None
    tenant: str | None = None
    source: str | None = None
    # The reason a stage gave (``credentials_refused``, ...): one group of a cause.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as operators see it."""

    id: int
    record_id: uuid.UUID
    tenant: str
    source: str
    stage: str
    kind: str
    reason: str
    detail: str
    attempts: int
    created_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    note: str | None = None


def _where(filters: Filters, *, open_only: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if open_only:
        conditions.append(DeadLetter.resolved_at.is_(None))
    if filters.ids:
        conditions.append(DeadLetter.id.in_(list(filters.ids)))
    if filters.kind:
        conditions.append(DeadLetter.kind == filters.kind)
    if filters.stage:
        conditions.append(DeadLetter.stage == filters.stage)
    if filters.source:
        conditions.append(DeadLetter.source == filters.source)
    if filters.reason:
        conditions.append(DeadLetter.reason == filters.reason)
    if filters.tenant:
        conditions.append(
            DeadLetter.tenant_id.in_(select(Tenant.id).where(Tenant.slug == filters.tenant))
        )
    return conditions


def _select(filters: Filters, *, open_only: bool) -> Select[DeadLetter, str]:
    return (
        select(DeadLetter, Tenant.slug)
        .join(Tenant, Tenant.id == DeadLetter.tenant_id)
        .where(*_where(filters, open_only=open_only))
        .order_by(DeadLetter.id)
    )


async def list_letters(
    conn: AsyncConnection, filters: Filters, *, include_resolved: bool = False, limit: int = 200
) -> list[DeadLetterView]:
    """Dead letters matching ``filters``, oldest first."""
    rows = (await conn.execute(_select(filters, open_only=not include_resolved).limit(limit))).all()
    return [
        DeadLetterView(
            id=row.id,
            record_id=uuid.UUID(str(row.record_id)),
            tenant=row.slug,
            source=row.source,
            stage=row.stage,
            kind=row.kind,
            reason=row.reason,
            detail=row.detail,
            attempts=row.attempts,
            created_at=row.created_at,
            resolved_at=row.resolved_at,
            resolution=row.resolution,
            note=row.note,
        )
        for row in rows
    ]


async def resolve(
    conn: AsyncConnection, filters: Filters, resolution: str, note: str | None = None
) -> list[tuple[uuid.UUID, Stage]]:
    """Close every matching open letter (with the operator's ``note``); the (record id, stage)
    of each."""
    resolved = await conn.execute(
        update(DeadLetter)
        .where(*_where(filters, open_only=True))
        .values(resolved_at=text("now()"), resolution=resolution, note=note)
        .returning(DeadLetter.record_id, DeadLetter.stage)
    )
    return [(row.record_id, row.stage) for row in resolved]


async def open_quarantine_letters(
    conn: AsyncConnection, connection_id: int
) -> list[tuple[int, uuid.UUID]]:
    """The open intake letters (quarantined records) of one connection: (letter id, record id),
    oldest first."""
    rows = await conn.execute(
        select(DeadLetter.id, DeadLetter.record_id)
        .join(RecordKey, RecordKey.id == DeadLetter.record_id)
        .where(
            DeadLetter.resolved_at.is_(None),
            DeadLetter.stage == "intake",
            RecordKey.connection_id == connection_id,
        )
        .order_by(DeadLetter.id)
    )
    return [(row.id, row.record_id) for row in rows]
