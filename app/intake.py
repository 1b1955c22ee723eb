"""The source-agnostic intake core: record + outbox in one transaction, duplicates replayed.

Every router and the poller hand a verified, parsed event here. This module knows no ATS and
no HTTP: an :class:`Answer` is status, headers and bytes, which the routers turn into a
response. A record is written either in its own single statement (the request path) or inside
a transaction the caller holds (a poll page, whose cursor commits with its records).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.connections import ConnectionInfo
from app.db import DB_ERRORS, run_bounded
from app.errors import AppError, unavailable
from app.ids import uuid7
from app.metrics import EVENTS, INTAKE_SECONDS, OTHER
from app.queue import PROCESS_RECORD, Queue
from app.schemas.parsed import Parsed
from app.store import records
from app.store.records import NewRecord, StoredAnswer, ThreadHead

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Never stored: credentials must not outlive the request that carried them.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "apikey", "x-api-key", "x-hook-secret"}
)


class Deadline:
    """The time left of the sender's budget for one request."""

    def __init__(self, budget_s: float) -> None:
        self.started = time.monotonic()
        self.expires = self.started + budget_s
        # Time spent waiting for the database so far (Intake adds each wait).
        self.database_s = 0.0

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires - time.monotonic())

    def database(self, window_s: float) -> float:
        """Seconds the request may still wait for the database: ``window_s`` for all its
        waits together (time between them, an API call, does not count), never more than
        the request has left."""
        return max(0.0, min(self.remaining(), window_s - self.database_s))

    def timeout(self) -> asyncio.Timeout:
        """A context manager that cancels the work when the budget is spent."""
        return asyncio.timeout(self.remaining())


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply given to the first delivery, replayed verbatim to every duplicate."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


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
    # The ids the event names ({"person": ..., "job": ...}), from the typed event.
    subjects: Mapping[str, str] = field(default_factory=dict)
    # Events of one thread (an iCIMS workflow, ...) are compared with the thread's newest.
    thread: str | None = None
    # Non-empty for an authentic event that did not fit its model: recorded, answered 2xx,
    # kept out of enrichment and listed as a configuration dead letter ("unexpected shape").
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the intake did with an event; ``answer`` is None for a record nobody awaited."""

    record_id: uuid.UUID
    answer: Answer | None
    duplicate: bool


AnswerFor = Callable[[uuid.UUID], Answer]


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping with a record, credentials removed."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def replayed(stored: StoredAnswer) -> Outcome:
    """The outcome of a duplicate: the stored record and the answer it was given."""
    answer = None if stored.status is None else Answer(stored.status, stored.body, stored.headers)
    return Outcome(stored.record_id, answer, duplicate=True)


class Intake:
    """Records events exactly once and publishes their jobs after commit."""

    def __init__(self, engine: AsyncEngine, queue: Queue, *, db_timeout_s: float) -> None:
        # ``engine`` runs in autocommit: one statement is a single ACID transaction, and
        # BEGIN/COMMIT round trips would buy nothing on the request path.
        self._engine = engine
        self._queue = queue
        self._db_timeout_s = db_timeout_s

    async def _run(
        self,
        conn: AsyncConnection | None,
        deadline: Deadline | None,
        work: Callable[[AsyncConnection], Awaitable[T]],
    ) -> T:
        """``work`` on the caller's connection, or on one of ours within the request's
        database window (pool checkout, connect and statements included)."""
        if conn is not None:
            return await work(conn)

        async def own() -> T:
            async with self._engine.connect() as db:
                return await work(db)

        timeout_s = deadline.database(self._db_timeout_s) if deadline else None
        started = time.monotonic()
        try:
            return await run_bounded(own, timeout_s)
        except DB_ERRORS as exc:
            # Whether or not a statement committed, the sender retries and a committed record
            # then answers as a duplicate: no 2xx is ever given for an unknown state.
            log.warning("intake.unavailable", error=type(exc).__name__)
            raise unavailable(f"database: {type(exc).__name__}") from exc
        finally:
            if deadline is not None:
                deadline.database_s += time.monotonic() - started

    async def find(
        self,
        *,
        tenant_id: int,
        source: str,
        dedupe_key: str,
        deadline: Deadline | None = None,
        conn: AsyncConnection | None = None,
    ) -> Outcome | None:
        """The stored outcome of an earlier delivery with this key, if any."""
        stored = await self._run(
            conn,
            deadline,
            lambda db: records.find(db, tenant_id=tenant_id, source=source, dedupe_key=dedupe_key),
        )
        return None if stored is None else replayed(stored)

    async def thread_head(
        self,
        *,
        tenant_id: int,
        source: str,
        thread: str,
        deadline: Deadline | None = None,
        conn: AsyncConnection | None = None,
    ) -> ThreadHead | None:
        """The newest record of ``thread``, if any."""
        return await self._run(
            conn,
            deadline,
            lambda db: records.latest_in_thread(
                db, tenant_id=tenant_id, source=source, thread=thread
            ),
        )

    async def record(
        self,
        event: Event,
        *,
        answer_for: AnswerFor | None,
        deadline: Deadline | None = None,
        conn: AsyncConnection | None = None,
    ) -> Outcome:
        """Record ``event`` and its outbox row, or replay the first answer of its key.

        With ``conn`` the statements join the caller's transaction (nothing is committed
        here); without it they run as one statement of their own under ``deadline``.
        """
        info = event.connection
        record_id = uuid7()
        answer = answer_for(record_id) if answer_for is not None else None
        new = NewRecord(
            id=record_id,
            tenant_id=info.tenant_id,
            connection_id=info.id,
            source=info.source,
            dedupe_key=event.dedupe_key,
            event_type=event.event_type,
            known=event.known,
            subjects=event.subjects,
            thread=event.thread,
            headers=storable_headers(event.headers),
            payload=event.payload,
            raw_body=event.raw_body,
            answer_status=None if answer is None else answer.status,
            answer_headers=None if answer is None else answer.headers,
            answer_body=None if answer is None else answer.body,
            problem="; ".join(event.problems) if event.problems else None,
            ack_ms=None if deadline is None else int((time.monotonic() - deadline.started) * 1000),
        )

        async def insert(db: AsyncConnection) -> tuple[bool, StoredAnswer | None]:
            if await records.insert(db, new, task=PROCESS_RECORD):
                return True, None
            return False, await records.find(
                db, tenant_id=info.tenant_id, source=info.source, dedupe_key=event.dedupe_key
            )

        started = time.monotonic()
        inserted, stored = await self._run(conn, deadline, insert)
        INTAKE_SECONDS.labels(info.source).observe(time.monotonic() - started)
        # Only modelled types name a series: the sender chooses the type string.
        event_type = event.event_type if event.known else OTHER
        if not inserted:
            EVENTS.labels(info.source, event_type, "duplicate").inc()
            await self._queue.count_duplicate(info.tenant_id, info.source)
            if stored is None:  # pragma: no cover - the conflicting row is visible after the wait
                raise AppError(503, "Please retry.", "conflicting record vanished")
            log.info(
                "intake.duplicate",
                source=info.source,
                tenant=info.tenant_slug,
                record_id=str(stored.record_id),
            )
            return replayed(stored)
        outcome = "quarantined" if event.problems else "recorded"
        EVENTS.labels(info.source, event_type, outcome).inc()
        log.info(
            "intake.recorded",
            source=info.source,
            tenant=info.tenant_slug,
            event_type=event.event_type,
            record_id=str(record_id),
        )
        return Outcome(record_id, answer, duplicate=False)

    @staticmethod
    def event(
        connection: ConnectionInfo,
        parsed: Parsed,
        *,
        dedupe_key: str,
        payload: Any,
        raw_body: bytes,
        headers: Mapping[str, str],
        thread: str | None = None,
    ) -> Event:
        """The :class:`Event` for a parsed payload."""
        return Event(
            connection=connection,
            dedupe_key=dedupe_key,
            event_type=parsed.event_type,
            known=parsed.known and not parsed.problems,
            payload=payload,
            raw_body=raw_body,
            headers=headers,
            subjects=parsed.subjects,
            thread=thread,
            problems=parsed.problems,
        )

    async def publish(self, outcome: Outcome, *, known: bool) -> None:
        """After commit, hint the workers; the sweeper covers a failure here.

        Awaited before answering rather than run as a background task: a background task
        holds the keep-alive connection's cycle open and, under load, starved the enqueues.
        """
        if known and not outcome.duplicate:
            await self._queue.enqueue_record(outcome.record_id)
