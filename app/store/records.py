"""The record table: one row per received (or polled) event, unique per (tenant, source, key)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

# Record and outbox row in one statement, which PostgreSQL runs as one transaction when the
# caller is in autocommit; inside a caller's transaction it simply joins it.
_INSERT = text(
    """
    WITH new AS (
        INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                            state, subjects, thread, headers, payload, raw_body,
                            answer_status, answer_headers, answer_body, ack_ms)
        VALUES (:id, :tenant_id, :connection_id, :source, :dedupe_key, :event_type, :known,
                :state, CAST(:subjects AS jsonb), :thread, CAST(:headers AS jsonb),
                CAST(:payload AS jsonb), :raw_body,
                :answer_status, CAST(:answer_headers AS jsonb), :answer_body, :ack_ms)
        ON CONFLICT (tenant_id, source, dedupe_key) DO NOTHING
        RETURNING id, known, tenant_id, source
    ), box AS (
        INSERT INTO outbox (record_id, task) SELECT id, :task FROM new WHERE known
    ), letter AS (
        -- An authentic event that did not fit its model: kept, and listed for the tenant.
        INSERT INTO dead_letter (record_id, tenant_id, source, stage, kind, reason, detail,
                                 attempts)
        SELECT id, tenant_id, source, 'intake', 'configuration', 'unexpected_shape', :problem, 0
        FROM new WHERE CAST(:problem AS text) IS NOT NULL
    )
    SELECT id FROM new
    """
)
_FIND = text(
    """
    SELECT id, answer_status, answer_headers, answer_body FROM record
    WHERE tenant_id = :tenant_id AND source = :source AND dedupe_key = :dedupe_key
    """
)
_LATEST_IN_THREAD = text(
    """
    SELECT id, dedupe_key, EXTRACT(EPOCH FROM now() - received_at)::float8 AS age_s,
           answer_status, answer_headers, answer_body
    FROM record
    WHERE tenant_id = :tenant_id AND source = :source AND thread = :thread
    ORDER BY received_at DESC, id DESC
    LIMIT 1
    """
)
_SET_STATE = text(
    "UPDATE record SET state = :state, "
    "processed_at = CASE WHEN :state = 'processed' THEN now() ELSE processed_at END "
    "WHERE id = :id"
)
_RESET = text("UPDATE record SET state = 'received', processed_at = NULL WHERE id = ANY(:ids)")


@dataclass(frozen=True, slots=True)
class NewRecord:
    """Everything stored for one event; ``answer_*`` is None for a polled record."""

    id: uuid.UUID
    tenant_id: int
    connection_id: int
    source: str
    dedupe_key: str
    event_type: str
    known: bool
    subjects: Mapping[str, str]
    thread: str | None
    headers: Mapping[str, str]
    payload: Any
    raw_body: bytes
    answer_status: int | None
    answer_headers: Mapping[str, str] | None
    answer_body: bytes | None
    # Why an authentic event did not fit its model; it is then stored but quarantined.
    problem: str | None = None
    # Milliseconds since the request arrived (None for a polled record).
    ack_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer given to a record's first delivery (None fields for a polled record)."""

    record_id: uuid.UUID
    status: int | None
    headers: dict[str, str]
    body: bytes


def _answer(row: Row[Any]) -> StoredAnswer:
    return StoredAnswer(
        row.id,
        row.answer_status,
        dict(row.answer_headers or {}),
        bytes(row.answer_body or b""),
    )


async def insert(conn: AsyncConnection, record: NewRecord, *, task: str) -> bool:
    """Insert the record (and, if known, its outbox row); False if the key already exists."""
    params = {
        "id": record.id,
        "tenant_id": record.tenant_id,
        "connection_id": record.connection_id,
        "source": record.source,
        "dedupe_key": record.dedupe_key,
        "event_type": record.event_type,
        "known": record.known and record.problem is None,
        "state": "received" if record.problem is None else "quarantined",
        "problem": None if record.problem is None else record.problem[:2000],
        "subjects": orjson.dumps(dict(record.subjects)).decode(),
        "thread": record.thread,
        "headers": orjson.dumps(dict(record.headers)).decode(),
        "payload": orjson.dumps(record.payload).decode(),
        "raw_body": record.raw_body,
        "answer_status": record.answer_status,
        "answer_headers": (
            None
            if record.answer_headers is None
            else orjson.dumps(dict(record.answer_headers)).decode()
        ),
        "answer_body": record.answer_body,
        "ack_ms": record.ack_ms,
        "task": task,
    }
    return (await conn.execute(_INSERT, params)).first() is not None


async def find(
    conn: AsyncConnection, *, tenant_id: int, source: str, dedupe_key: str
) -> StoredAnswer | None:
    """The record with this key and the answer it was given, if any."""
    row = (
        await conn.execute(
            _FIND, {"tenant_id": tenant_id, "source": source, "dedupe_key": dedupe_key}
        )
    ).first()
    return None if row is None else _answer(row)


@dataclass(frozen=True, slots=True)
class ThreadHead:
    """The newest record of a thread."""

    dedupe_key: str
    # Seconds since it was received, by the database's clock.
    age_s: float
    answer: StoredAnswer


async def latest_in_thread(
    conn: AsyncConnection, *, tenant_id: int, source: str, thread: str
) -> ThreadHead | None:
    """The newest record of ``thread`` (one iCIMS workflow, ...), if any."""
    row = (
        await conn.execute(
            _LATEST_IN_THREAD, {"tenant_id": tenant_id, "source": source, "thread": thread}
        )
    ).first()
    return None if row is None else ThreadHead(row.dedupe_key, row.age_s, _answer(row))


_FOR_REPARSE = text(
    """
    SELECT r.id, r.source, r.payload, r.headers, c.options
    FROM record r JOIN connection c ON c.id = r.connection_id
    WHERE r.id = ANY(:ids) AND r.state = 'quarantined'
    FOR UPDATE OF r
    """
)
_REPARSED = text(
    """
    WITH updated AS (
        UPDATE record SET event_type = :event_type, known = :known,
                          subjects = CAST(:subjects AS jsonb), state = 'received'
        WHERE id = :id AND state = 'quarantined'
        RETURNING id, known
    )
    INSERT INTO outbox (record_id, task) SELECT id, :task FROM updated WHERE known
    ON CONFLICT (record_id) DO NOTHING
    """
)


async def quarantined(conn: AsyncConnection, record_ids: list[uuid.UUID]) -> list[Row[Any]]:
    """The quarantined records among ``record_ids``, locked, with their connection's options."""
    return list((await conn.execute(_FOR_REPARSE, {"ids": record_ids})).all())


async def reparsed(
    conn: AsyncConnection,
    record_id: uuid.UUID,
    *,
    event_type: str,
    known: bool,
    subjects: Mapping[str, str],
    task: str,
) -> None:
    """A quarantined record that now fits its model: typed, released and (if known) owed its
    enrichment job."""
    await conn.execute(
        _REPARSED,
        {
            "id": record_id,
            "event_type": event_type,
            "known": known,
            "subjects": orjson.dumps(dict(subjects)).decode(),
            "task": task,
        },
    )


async def set_state(conn: AsyncConnection, record_id: uuid.UUID, state: str) -> None:
    """``processed``, ``dead_letter``, ``discarded``, ... (``processed`` stamps the time)."""
    await conn.execute(_SET_STATE, {"id": record_id, "state": state})


async def reset(conn: AsyncConnection, record_ids: list[uuid.UUID]) -> None:
    """Back to ``received`` (a dead letter retried)."""
    await conn.execute(_RESET, {"ids": record_ids})
