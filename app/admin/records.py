"""Records for operators: filtered lists with cursors, and one record's whole story."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Row

from app.admin import schemas as s
from app.admin.common import PAGE_MAX, invalid, not_found, reparsers
from app.services import Services
from app.store import admin as sql
from app.store import attempts as attempts_sql
from app.store import query, story

log = structlog.get_logger(__name__)


def record_filters(q: s.RecordQuery, ids: Sequence[uuid.UUID] = ()) -> query.RecordFilters:
    """The store's filters for a query."""
    subjects = {
        k: v for k, v in (("person", q.person), ("job", q.job), ("application", q.application)) if v
    }
    return query.RecordFilters(
        ids=tuple(ids),
        tenant=q.tenant,
        source=q.source,
        event_type=q.event_type,
        state=q.state,
        received_from=q.received_from,
        received_to=q.received_to,
        subjects=subjects,
    )


def encode_cursor(received_at: datetime, record_id: uuid.UUID) -> str:
    """An opaque position after which the next page starts."""
    raw = f"{received_at.isoformat()}|{record_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; 400 for one this API did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, rid = raw.split("|")
        position = datetime.fromisoformat(at), uuid.UUID(rid)
        if position[0].tzinfo is None:
            raise ValueError("no offset")
        s.storable_time(position[0])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid("The cursor is not one this API returned.") from exc
    return position


async def list_records(
    services: Services, *, q: s.RecordQuery, limit: int = 50, cursor: str | None = None
) -> s.RecordPage:
    """A page of matching records, newest first."""
    if not 1 <= limit <= PAGE_MAX:
        raise invalid(f"limit must be between 1 and {PAGE_MAX}.")
    after = decode_cursor(cursor) if cursor else None
    async with services.engine.connect() as conn:
        # A misspelt tenant is an error, not an empty page that reads as "no records".
        if q.tenant is not None and await sql.get_tenant(conn, q.tenant) is None:
            raise not_found(f"Tenant {q.tenant!r}")
        rows = await query.list_records(conn, record_filters(q), limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    summaries = [s.RecordSummary.model_validate(r, from_attributes=True) for r in rows]
    last = summaries[-1] if more else None
    return s.RecordPage(
        records=summaries,
        next_cursor=None if last is None else encode_cursor(last.received_at, last.id),
    )


def _body(raw: bytes | None) -> s.Body:
    data = bytes(raw or b"")
    try:
        decoded: str | None = data.decode()
    except UnicodeDecodeError:
        decoded = None
    return s.Body(base64=base64.b64encode(data).decode(), text=decoded, size=len(data))


async def show_record(services: Services, *, record_id: uuid.UUID) -> s.RecordDetail:
    """One record's whole story: what arrived, the answer, enrichment, delivery, dead letters
    and replays."""
    async with services.engine.connect() as conn:
        found = await query.get_record(conn, record_id)
        if found is None:
            raise not_found(f"Record {record_id}")
        outbox = await query.outbox_of(conn, record_id)
        delivery = await query.delivery_of(conn, record_id)
        letters = await query.dead_letters_of(conn, record_id)
        replays = await sql.replays_of(conn, record_id)
        tried = await attempts_sql.of_record(conn, record_id)
        written = await story.written(
            conn,
            record_id=record_id,
            tenant_id=found.tenant_id,
            source=found.source,
            subjects=dict(found.subjects or {}),
        )
    record = found
    return s.RecordDetail(
        id=record.id,
        tenant=found.tenant,
        source=record.source,
        event_type=record.event_type,
        known=record.known,
        state=record.state,
        subjects=dict(record.subjects or {}),
        received_at=record.received_at,
        processed_at=record.processed_at,
        answer_status=record.answer_status,
        dedupe_key=record.dedupe_key,
        thread=record.thread,
        headers=dict(record.headers or {}),
        raw_body=_body(record.raw_body),
        payload=record.payload,
        answer=(
            None
            if record.answer_status is None
            else s.AnswerView(
                status=record.answer_status,
                headers=dict(record.answer_headers or {}),
                body=_body(record.answer_body),
            )
        ),
        ack_ms=record.ack_ms,
        outbox=None if outbox is None else s.WorkView.model_validate(outbox, from_attributes=True),
        delivery=(
            None if delivery is None else s.WorkView.model_validate(delivery, from_attributes=True)
        ),
        dead_letters=[
            s.DeadLetterView(**_letter_fields(row), tenant=found.tenant) for row in letters
        ],
        replays=[s.ReplayRef.model_validate(r, from_attributes=True) for r in replays],
        quarantine=await _quarantine(services, record),
        attempts=[_attempt_view(row) for row in tried],
        written=[s.WrittenView.model_validate(w, from_attributes=True) for w in written],
    )


def _attempt_view(row: Row[Any]) -> s.AttemptView:
    answer = None if row.answer is None else bytes(row.answer).decode(errors="replace")
    return s.AttemptView(
        attempted_at=row.attempted_at,
        latency_ms=row.latency_ms,
        status=row.status,
        error=row.error,
        answer=answer,
        answer_size=row.answer_size,
    )


async def _quarantine(services: Services, record: Row[Any]) -> s.QuarantineView | None:
    """For a quarantined record, what its source makes of it now (the connection's current
    options), so the operator sees what to map."""
    if record.state != "quarantined":
        return None
    async with services.engine.connect() as conn:
        connection = await sql.get_connection(conn, record.connection_id)
    reparse = reparsers().get(record.source)
    if connection is None or reparse is None:
        return None
    parsed = reparse(record.payload, dict(record.headers or {}), dict(connection.options or {}))
    return s.QuarantineView(
        connection_id=record.connection_id,
        problems=list(parsed.problems),
        missing={name: list(tried) for name, tried in parsed.missing.items()},
        body_fields=_field_paths(record.payload),
    )


# Enough to map from, not a dump of a large body.
_FIELD_PATHS_MAX = 100


def _field_paths(payload: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """The dotted paths of a JSON object's values (nested objects entered, three levels), in
    key order: the stored JSONB does not keep the body's."""
    if not isinstance(payload, dict):
        return []
    paths: list[str] = []
    for key, value in sorted(payload.items()):
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth < 2:
            paths += _field_paths(value, f"{path}.", depth + 1)
        else:
            paths.append(path)
        if len(paths) >= _FIELD_PATHS_MAX:
            break
    return paths[:_FIELD_PATHS_MAX]


def _letter_fields(row: Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in s.DeadLetterView.model_fields if name != "tenant"}
