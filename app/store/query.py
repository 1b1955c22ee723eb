"""Reading records for operators: filtered pages, one record's whole story, and statistics."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Row, case, exists, func, literal, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import DeadLetter, Delivery, Outbox, Record, RecordKey, Tenant

# Where a record stands, delivery included (docs/admin.md, "Record states"). The stored
# ``record.state`` ends at ``processed`` (enriched); the delivery row and its dead letter say
# the rest, so the shown state is derived here, once, for every list, filter, count and badge.
RecordState = Literal[
    "received", "processed", "delivered", "dead_letter", "quarantined", "discarded"
]
STATES: tuple[str, ...] = get_args(RecordState)

_OPEN_DELIVERY_LETTER = exists().where(
    DeadLetter.record_id == Delivery.record_id,
    DeadLetter.stage == "delivery",
    DeadLetter.resolved_at.is_(None),
)
# NULL when nothing is owed (no destination): the record stays ``processed``. A given-up row
# carries its error; one given up and no longer open was discarded (or expired unsent).
_DELIVERY_STATE = (
    select(
        case(
            (Delivery.done_at.is_(None), literal("processed")),
            (Delivery.last_error.is_(None), literal("delivered")),
            (_OPEN_DELIVERY_LETTER, literal("dead_letter")),
            else_=literal("discarded"),
        )
    )
    .where(Delivery.record_id == Record.id)
    .correlate(Record)
    .scalar_subquery()
)
shown_state: ColumnElement[str] = case(
    (Record.state == "processed", func.coalesce(_DELIVERY_STATE, literal("processed"))),
    else_=Record.state,
)


@dataclass(frozen=True, slots=True)
class RecordFilters:
    """Which records a listing or a replay covers; every field narrows it."""

    ids: tuple[uuid.UUID, ...] = ()
    tenant: str | None = None
    source: str | None = None
    event_type: str | None = None
    state: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    # Subject ids the event names: {"person": ..., "job": ..., "application": ...}.
    subjects: dict[str, str] = field(default_factory=dict)


def _where(filters: RecordFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.ids:
        conditions.append(Record.id.in_(list(filters.ids)))
    if filters.tenant is not None:
        conditions.append(Tenant.slug == filters.tenant)
    if filters.source is not None:
        conditions.append(Record.source == filters.source)
    if filters.event_type is not None:
        conditions.append(Record.event_type == filters.event_type)
    if filters.state is not None:
        conditions.append(shown_state == filters.state)
    if filters.received_from is not None:
        conditions.append(Record.received_at >= filters.received_from)
    if filters.received_to is not None:
        conditions.append(Record.received_at < filters.received_to)
    for kind, value in filters.subjects.items():
        # Sources name the same things differently (HR Manager: candidate, position).
        conditions.append(
            or_(*(Record.subjects.contains({name: value}) for name in _SUBJECT_NAMES[kind]))
        )
    return conditions


_SUBJECT_NAMES: dict[str, tuple[str, ...]] = {
    "person": ("person", "candidate"),
    "job": ("job", "position"),
    "application": ("application",),
}


_SUMMARY = (
    Record.id,
    Tenant.slug.label("tenant"),
    Record.source,
    Record.event_type,
    Record.known,
    shown_state.label("state"),
    Record.subjects,
    Record.received_at,
    Record.processed_at,
    # The answer lives with the dedupe key (docs/privacy.md), which outlives the bodies.
    RecordKey.answer_status,
)


async def list_records(
    conn: AsyncConnection,
    filters: RecordFilters,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Row[Any]]:
    """Up to ``limit`` records, newest first, strictly older than the ``after`` position."""
    query = (
        select(*_SUMMARY)
        .join(Tenant, Tenant.id == Record.tenant_id)
        .join(RecordKey, RecordKey.id == Record.id)
        .where(*_where(filters))
        .order_by(Record.received_at.desc(), Record.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Record.received_at, Record.id) < tuple_(*after))
    return list((await conn.execute(query)).all())


async def record_ids(
    conn: AsyncConnection, filters: RecordFilters, *, limit: int
) -> list[uuid.UUID]:
    """The ids of up to ``limit`` matching records, oldest first (the order a replay runs)."""
    query = (
        select(Record.id)
        .join(Tenant, Tenant.id == Record.tenant_id)
        .where(*_where(filters))
        .order_by(Record.received_at, Record.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def get_record(conn: AsyncConnection, record_id: uuid.UUID) -> Row[Any] | None:
    """Every column of one record, with its tenant's slug."""
    query = (
        select(
            *(c for c in Record.__table__.c if c.name != "state"),
            shown_state.label("state"),
            RecordKey.answer_status,
            RecordKey.answer_headers,
            RecordKey.answer_body,
            Tenant.slug.label("tenant"),
        )
        .join(Tenant, Tenant.id == Record.tenant_id)
        .join(RecordKey, RecordKey.id == Record.id)
        .where(Record.id == record_id)
    )
    row: Row[Any] | None = (await conn.execute(query)).first()  # type: ignore[assignment]
    return row


async def outbox_of(conn: AsyncConnection, record_id: uuid.UUID) -> Row[Any] | None:
    """The record's enrichment row."""
    return (await conn.execute(select(Outbox).where(Outbox.record_id == record_id))).first()


async def delivery_of(conn: AsyncConnection, record_id: uuid.UUID) -> Row[Any] | None:
    """The record's delivery row, without its body."""
    query = select(*(c for c in Delivery.__table__.c if c.name != "body")).where(
        Delivery.record_id == record_id
    )
    return (await conn.execute(query)).first()


async def dead_letters_of(conn: AsyncConnection, record_id: uuid.UUID) -> list[Row[Any]]:
    """Every dead letter of the record, open or resolved, oldest first."""
    query = select(DeadLetter).where(DeadLetter.record_id == record_id).order_by(DeadLetter.id)
    return list((await conn.execute(query)).all())


# Per tenant and source over a window: records, and the sender's wait (ack_ms, NULL for
# polled records, which percentile_cont skips).
_STATS = text(
    """
    SELECT t.slug AS tenant, r.source,
           count(*) AS records,
           t.id AS tenant_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ack_ms) AS ack_p50_ms,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY r.ack_ms) AS ack_p99_ms
    FROM record r
    JOIN tenant t ON t.id = r.tenant_id
    WHERE r.received_at >= :since AND r.received_at < :until
      AND (CAST(:tenant AS text) IS NULL OR t.slug = :tenant)
      AND (CAST(:source AS text) IS NULL OR r.source = :source)
    GROUP BY t.id, t.slug, r.source
    ORDER BY t.slug, r.source
    """
)
# The backlog is now, whatever the window: work not done, and how long the oldest has waited.
_BACKLOG = text(
    """
    SELECT t.slug AS tenant, t.id AS tenant_id, r.source, :table AS work,
           count(*) AS pending,
           EXTRACT(EPOCH FROM now() - min(w.created_at))::float8 AS oldest_age_s
    FROM {table} w
    JOIN record r ON r.id = w.record_id
    JOIN tenant t ON t.id = r.tenant_id
    WHERE w.done_at IS NULL
      AND (CAST(:tenant AS text) IS NULL OR t.slug = :tenant)
      AND (CAST(:source AS text) IS NULL OR r.source = :source)
    GROUP BY t.id, t.slug, r.source
    """
)


def _states(since: datetime, until: datetime, tenant: str | None, source: str | None) -> Any:
    """Counts by shown state per tenant and source (the listing's states, not the stored)."""
    inner = (
        select(Tenant.slug.label("tenant"), Record.source, shown_state.label("state"))
        .join(Tenant, Tenant.id == Record.tenant_id)
        .where(Record.received_at >= since, Record.received_at < until)
    )
    if tenant is not None:
        inner = inner.where(Tenant.slug == tenant)
    if source is not None:
        inner = inner.where(Record.source == source)
    shown = inner.subquery()
    return select(shown.c.tenant, shown.c.source, shown.c.state, func.count().label("n")).group_by(
        shown.c.tenant, shown.c.source, shown.c.state
    )


async def stats(
    conn: AsyncConnection,
    *,
    since: datetime,
    until: datetime,
    tenant: str | None,
    source: str | None,
) -> tuple[list[Row[Any]], list[Row[Any]], list[Row[Any]]]:
    """(totals and ack percentiles, counts by state, backlog) per tenant and source."""
    params = {"since": since, "until": until, "tenant": tenant, "source": source}
    totals = list((await conn.execute(_STATS, params)).all())
    states = list((await conn.execute(_states(since, until, tenant, source))).all())
    backlog: list[Row[Any]] = []
    for table in ("outbox", "delivery"):
        # The table name is one of two constants, never input.
        statement = text(_BACKLOG.text.replace("{table}", table))
        backlog += (await conn.execute(statement, {**params, "table": table})).all()
    return totals, states, backlog


__all__ = [
    "STATES",
    "RecordFilters",
    "RecordState",
    "dead_letters_of",
    "delivery_of",
    "get_record",
    "list_records",
    "outbox_of",
    "record_ids",
    "shown_state",
    "stats",
]
