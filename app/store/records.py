"""The record table: one row per received (or polled) event, unique per (tenant, source, key)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.driver import driver_of, driver_sql
from app.store.driver import fetch as driver_fetch

# Keys, records, outbox rows (and quarantine letters) of a whole batch in one statement, which
# PostgreSQL runs as one transaction when the caller is in autocommit; inside a caller's
# transaction it simply joins it. The key row decides: a record, its outbox row and its dead
# letter are written only for a key that is new (docs/privacy.md). The rows arrive as
# parallel arrays, so a batch of any size is one statement, one round trip and one WAL flush.
# Keys are inserted in key order: two batches holding the same keys then wait for each other
# in the same order instead of deadlocking; within a batch, the first of two deliveries of
# one key wins and the second is answered as its duplicate. Keys and records share
# ``received_at`` (one ``now()`` per statement).
_INSERT = text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:id AS uuid[]), CAST(:tenant_id AS bigint[]), CAST(:connection_id AS bigint[]),
            CAST(:source AS text[]), CAST(:dedupe_key AS text[]), CAST(:event_type AS text[]),
            CAST(:known AS boolean[]), CAST(:state AS text[]), CAST(:subjects AS text[]),
            CAST(:thread AS text[]), CAST(:headers AS text[]), CAST(:payload AS text[]),
            CAST(:raw_body AS bytea[]), CAST(:answer_status AS int[]),
            CAST(:answer_headers AS text[]), CAST(:answer_body AS bytea[]),
            CAST(:problem AS text[]), CAST(:ack_ms AS int[]), CAST(:markers AS text[])
        ) WITH ORDINALITY AS t(id, tenant_id, connection_id, source, dedupe_key, event_type,
                               known, state, subjects, thread, headers, payload, raw_body,
                               answer_status, answer_headers, answer_body, problem, ack_ms,
                               markers, ord)
    ), key AS (
        INSERT INTO record_key (id, tenant_id, connection_id, source, dedupe_key,
                                answer_status, answer_headers, answer_body)
        SELECT id, tenant_id, connection_id, source, dedupe_key,
               answer_status, CAST(answer_headers AS jsonb), answer_body
        FROM input
        ORDER BY tenant_id, source, dedupe_key, ord
        ON CONFLICT (tenant_id, source, dedupe_key) DO NOTHING
        RETURNING id, received_at
    ), new AS (
        INSERT INTO record (id, received_at, tenant_id, connection_id, source, dedupe_key,
                            event_type, known, state, subjects, thread, headers, payload,
                            raw_body, ack_ms, markers)
        SELECT key.id, key.received_at, input.tenant_id, input.connection_id, input.source,
               input.dedupe_key, input.event_type, input.known, input.state,
               CAST(input.subjects AS jsonb), input.thread, CAST(input.headers AS jsonb),
               CAST(input.payload AS jsonb), input.raw_body, input.ack_ms,
               CAST(input.markers AS jsonb)
        FROM key JOIN input ON input.id = key.id
        RETURNING id, known, tenant_id, source
    ), box AS (
        INSERT INTO outbox (record_id, task) SELECT id, :task FROM new WHERE known
    ), letter AS (
        -- An authentic event that did not fit its model: kept, and listed for the tenant.
        INSERT INTO dead_letter (record_id, tenant_id, source, stage, kind, reason, detail,
                                 attempts)
        SELECT new.id, new.tenant_id, new.source, 'intake', 'configuration', 'unexpected_shape',
               input.problem, 0
        FROM new JOIN input ON input.id = new.id
        WHERE input.problem IS NOT NULL
    )
    SELECT id FROM new
    """
)
# From the key table: a record whose bodies are gone (or whose partition was dropped) is still
# a duplicate, and its first answer is replayed.
_FIND_MANY = text(
    """
    SELECT r.id, r.tenant_id, r.source, r.dedupe_key,
           r.answer_status, r.answer_headers, r.answer_body
    FROM unnest(CAST(:tenant_id AS bigint[]), CAST(:source AS text[]),
                CAST(:dedupe_key AS text[])) AS k(tenant_id, source, dedupe_key)
    JOIN record_key r USING (tenant_id, source, dedupe_key)
    """
)
_FIND = text(
    """
    SELECT id, answer_status, answer_headers, answer_body FROM record_key
    WHERE tenant_id = :tenant_id AND source = :source AND dedupe_key = :dedupe_key
    """
)
# The newest of each thread by its index, then the newest of those.
_LATEST_IN_THREAD = text(
    """
    SELECT r.id, r.dedupe_key, EXTRACT(EPOCH FROM now() - r.received_at)::float8 AS age_s,
           k.answer_status, k.answer_headers, k.answer_body
    FROM unnest(CAST(:threads AS text[])) AS t(thread)
    CROSS JOIN LATERAL (
        SELECT id, dedupe_key, received_at FROM record
        WHERE tenant_id = :tenant_id AND source = :source AND thread = t.thread
        ORDER BY received_at DESC, id DESC
        LIMIT 1
    ) r
    JOIN record_key k ON k.id = r.id
    ORDER BY r.received_at DESC, r.id DESC
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
    # Hirehook's own markers (app.intake.core.Event.markers), never a request header.
    markers: Mapping[str, str] = field(default_factory=dict)


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


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def insert_many(
    conn: AsyncConnection, batch: Sequence[NewRecord], *, task: str
) -> set[uuid.UUID]:
    """Insert the records (and the known ones' outbox rows); the ids actually inserted.

    A record missing from the result hit an existing key (or an earlier one of the batch).
    """
    if not batch:
        return set()
    rows = await conn.execute(_INSERT, _params(batch, task))
    return set(rows.scalars().all())


def _params(batch: Sequence[NewRecord], task: str) -> dict[str, Any]:
    """:data:`_INSERT`'s parameters: one array per column, in the batch's order."""
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for record in batch:
        for name, value in _row(record).items():
            columns[name].append(value)
    return {**columns, "task": task}


async def insert_many_alone(
    conn: AsyncConnection, batch: Sequence[NewRecord], *, task: str
) -> set[uuid.UUID]:
    """:func:`insert_many` as a transaction of its own, on a connection outside any
    transaction (the request path's autocommit engine): the same statement, sent through the
    driver's connection. SQLAlchemy's execution around it (the compiled-cache look-up, the
    adapted cursor, the result wrapping) was about a quarter of the statement's CPU in the
    API; asyncpg prepares the statement once per connection (its statement cache) either way.

    Errors come out as SQLAlchemy's would where the intake tells them apart (a constraint
    violation is an :class:`IntegrityError`); any other driver error is left as it is (the
    intake answers 503 for both). A connection whose state is unknown after a failure (lost,
    cancelled mid-statement, a client-side error) is invalidated, as SQLAlchemy does, so the
    pool never hands it out again.
    """
    if not batch:
        return set()
    driver = await driver_of(conn)
    # Outside a transaction only: inside one, SQLAlchemy begins lazily on its own first
    # statement, and a statement sent past it would commit on its own.
    if driver is None or driver.is_in_transaction():
        return await insert_many(conn, batch, task=task)
    try:
        rows = await driver_fetch(conn, driver, _INSERT, _params(batch, task))
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(driver_sql(conn, _INSERT)[0], None, exc) from exc
    return {row[0] for row in rows}


async def insert(conn: AsyncConnection, record: NewRecord, *, task: str) -> bool:
    """Insert the record (and, if known, its outbox row); False if the key already exists."""
    return bool(await insert_many(conn, [record], task=task))


_COLUMNS = (
    "id",
    "tenant_id",
    "connection_id",
    "source",
    "dedupe_key",
    "event_type",
    "known",
    "state",
    "subjects",
    "thread",
    "headers",
    "payload",
    "raw_body",
    "answer_status",
    "answer_headers",
    "answer_body",
    "problem",
    "ack_ms",
    "markers",
)


def _row(record: NewRecord) -> dict[str, Any]:
    quarantined = record.problem is not None
    return {
        "id": record.id,
        "tenant_id": record.tenant_id,
        "connection_id": record.connection_id,
        "source": record.source,
        "dedupe_key": record.dedupe_key,
        "event_type": record.event_type,
        "known": record.known and not quarantined,
        "state": "quarantined" if quarantined else "received",
        "subjects": _json(dict(record.subjects)),
        "thread": record.thread,
        "headers": _json(dict(record.headers)),
        "payload": _json(record.payload),
        "raw_body": record.raw_body,
        "answer_status": record.answer_status,
        "answer_headers": (
            None if record.answer_headers is None else _json(dict(record.answer_headers))
        ),
        "answer_body": record.answer_body,
        "problem": None if record.problem is None else record.problem[:2000],
        "ack_ms": record.ack_ms,
        "markers": _json(dict(record.markers)) if record.markers else None,
    }


Key = tuple[int, str, str]


async def find_many(conn: AsyncConnection, keys: Sequence[Key]) -> dict[Key, StoredAnswer]:
    """The records with these (tenant, source, dedupe key) keys and their answers."""
    if not keys:
        return {}
    rows = await conn.execute(
        _FIND_MANY,
        {
            "tenant_id": [k[0] for k in keys],
            "source": [k[1] for k in keys],
            "dedupe_key": [k[2] for k in keys],
        },
    )
    return {(row.tenant_id, row.source, row.dedupe_key): _answer(row) for row in rows}


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
    conn: AsyncConnection, *, tenant_id: int, source: str, threads: Sequence[str]
) -> ThreadHead | None:
    """The newest record of ``threads`` together (one iCIMS workflow, ...), if any."""
    row = (
        await conn.execute(
            _LATEST_IN_THREAD,
            {"tenant_id": tenant_id, "source": source, "threads": list(threads)},
        )
    ).first()
    return None if row is None else ThreadHead(row.dedupe_key, row.age_s, _answer(row))


_FOR_REPARSE = text(
    """
    SELECT r.id, r.source, r.payload, COALESCE(r.headers, '{}'::jsonb) AS headers,
           COALESCE(r.markers, '{}'::jsonb) AS markers, c.options
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
