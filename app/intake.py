"""The source-agnostic intake core: record + outbox in one transaction, duplicates replayed.

Every router (and the poller) hands a verified, parsed event here. This module knows no ATS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.connections import ConnectionInfo
from app.db import DB_ERRORS
from app.errors import AppError, unavailable
from app.ids import uuid7
from app.metrics import INTAKE, INTAKE_SECONDS
from app.queue import PROCESS_RECORD, Queue

log = structlog.get_logger(__name__)

# Never stored: credentials must not outlive the request that carried them.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "apikey", "x-api-key", "x-hook-secret"}
)


class Deadline:
    """The time left of the sender's budget for one request."""

    def __init__(self, budget_s: float) -> None:
        self.expires = time.monotonic() + budget_s

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires - time.monotonic())

    def timeout(self) -> asyncio.Timeout:
        """A context manager that cancels the work when the budget is spent."""
        return asyncio.timeout(self.remaining())


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply given to the first delivery, replayed verbatim to every duplicate."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def response(self, *, record_id: uuid.UUID, duplicate: bool) -> Response:
        """The HTTP response, marked so operators can tell a replay from a first answer."""
        headers = dict(self.headers)
        headers["hirehook-record-id"] = str(record_id)
        if duplicate:
            headers["hirehook-duplicate"] = "true"
        return Response(self.body, self.status, headers=headers, media_type="application/json")


def json_answer(
    status: int, body: Mapping[str, Any], headers: dict[str, str] | None = None
) -> Answer:
    """An answer with a JSON body."""
    return Answer(status, orjson.dumps(body), headers or {})


@dataclass(frozen=True, slots=True)
class Event:
    """A verified, parsed event ready to be recorded."""

    connection: ConnectionInfo
    dedupe_key: str
    event_type: str
    # False for a type this version does not model: stored for later, never dispatched.
    known: bool
    payload: Any
    raw_body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the intake did with an event."""

    record_id: uuid.UUID
    answer: Answer
    duplicate: bool

    def response(self) -> Response:
        """The HTTP response for this outcome."""
        return self.answer.response(record_id=self.record_id, duplicate=self.duplicate)


AnswerFor = Callable[[uuid.UUID], Answer]
Validate = Callable[[], Awaitable[None]]

_INSERT = text(
    """
    WITH new AS (
        INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                            headers, payload, raw_body, answer_status, answer_headers, answer_body)
        VALUES (:id, :tenant_id, :connection_id, :source, :dedupe_key, :event_type, :known,
                CAST(:headers AS jsonb), CAST(:payload AS jsonb), :raw_body, :answer_status,
                CAST(:answer_headers AS jsonb), :answer_body)
        ON CONFLICT (tenant_id, source, dedupe_key) DO NOTHING
        RETURNING id, known
    ), box AS (
        INSERT INTO outbox (record_id, task) SELECT id, :task FROM new WHERE known
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


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping with a record, credentials removed."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


class Intake:
    """Records events exactly once and publishes their jobs after commit."""

    def __init__(self, engine: AsyncEngine, queue: Queue) -> None:
        # ``engine`` runs in autocommit: the CTE below is one statement and so a single ACID
        # transaction; BEGIN/COMMIT round trips would buy nothing.
        self._engine = engine
        self._queue = queue

    async def find(
        self, *, tenant_id: int, source: str, dedupe_key: str, deadline: Deadline
    ) -> Outcome | None:
        """The stored outcome of an earlier delivery with this key, if any."""
        try:
            async with deadline.timeout(), self._engine.connect() as conn:
                row = (
                    await conn.execute(
                        _FIND, {"tenant_id": tenant_id, "source": source, "dedupe_key": dedupe_key}
                    )
                ).first()
        except DB_ERRORS as exc:
            raise unavailable(f"database: {type(exc).__name__}") from exc
        if row is None:
            return None
        answer = Answer(row.answer_status, bytes(row.answer_body), dict(row.answer_headers))
        return Outcome(row.id, answer, duplicate=True)

    async def record(
        self,
        event: Event,
        *,
        answer_for: AnswerFor,
        deadline: Deadline,
        validate: Validate | None = None,
    ) -> Outcome:
        """Record ``event`` and its outbox row in one transaction, or replay the first answer.

        ``validate`` runs only for a new event (a duplicate was validated the first time) and
        may raise :class:`AppError` to refuse it; nothing is stored then.
        """
        conn_info = event.connection
        key: dict[str, object] = {
            "tenant_id": conn_info.tenant_id,
            "source": conn_info.source,
            "dedupe_key": event.dedupe_key,
        }
        if validate is not None:
            earlier = await self.find(
                tenant_id=conn_info.tenant_id,
                source=conn_info.source,
                dedupe_key=event.dedupe_key,
                deadline=deadline,
            )
            if earlier is not None:
                return earlier
            await validate()
        record_id = uuid7()
        answer = answer_for(record_id)
        params = {
            **key,
            "id": record_id,
            "connection_id": conn_info.id,
            "event_type": event.event_type,
            "known": event.known,
            "headers": orjson.dumps(storable_headers(event.headers)).decode(),
            "payload": orjson.dumps(event.payload).decode(),
            "raw_body": event.raw_body,
            "answer_status": answer.status,
            "answer_headers": orjson.dumps(answer.headers).decode(),
            "answer_body": answer.body,
            "task": PROCESS_RECORD,
        }
        started = time.monotonic()
        try:
            async with deadline.timeout(), self._engine.connect() as conn:
                inserted = (await conn.execute(_INSERT, params)).first()
                stored = None if inserted else (await conn.execute(_FIND, key)).first()
        except DB_ERRORS as exc:
            # Whether or not the statement committed, the sender retries and a committed
            # record then answers as a duplicate: no 2xx is ever given for an unknown state.
            log.warning("intake.unavailable", source=conn_info.source, error=type(exc).__name__)
            raise unavailable(f"database: {type(exc).__name__}") from exc
        INTAKE_SECONDS.labels(conn_info.source).observe(time.monotonic() - started)
        if inserted is None:
            INTAKE.labels(conn_info.source, "duplicate").inc()
            if stored is None:  # pragma: no cover - the conflicting row is visible after the wait
                raise AppError(503, "Please retry.", "conflicting record vanished")
            log.info("intake.duplicate", source=conn_info.source, record_id=str(stored.id))
            return Outcome(
                stored.id,
                Answer(
                    stored.answer_status, bytes(stored.answer_body), dict(stored.answer_headers)
                ),
                duplicate=True,
            )
        INTAKE.labels(conn_info.source, "recorded").inc()
        log.info(
            "intake.recorded",
            source=conn_info.source,
            tenant=conn_info.tenant_slug,
            event_type=event.event_type,
            record_id=str(record_id),
        )
        return Outcome(record_id, answer, duplicate=False)

    async def publish(self, outcome: Outcome, *, known: bool) -> None:
        """After commit, hint the workers; the sweeper covers a failure here.

        Awaited before answering rather than run as a background task: a background task
        holds the keep-alive connection's cycle open and, under load, starved the enqueues.
        """
        if known and not outcome.duplicate:
            await self._queue.enqueue_record(outcome.record_id)
