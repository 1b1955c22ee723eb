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
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.intake.connections import ConnectionInfo
from app.intake.publisher import Publisher
from app.platform.db import DB_ERRORS, run_bounded
from app.platform.errors import AppError, unavailable
from app.platform.group_commit import GroupCommit
from app.platform.ids import uuid7
from app.platform.metrics import EVENTS, INTAKE_SECONDS, OTHER, Children
from app.platform.queue import PROCESS_RECORD, Queue
from app.schemas.parsed import Parsed
from app.store import records
from app.store.records import NewRecord, StoredAnswer, ThreadHead

log = structlog.get_logger(__name__)
T = TypeVar("T")
_EVENTS = Children(EVENTS)
_INTAKE_SECONDS = Children(INTAKE_SECONDS)

# The request headers kept with every record, as evidence of what arrived; each source adds
# its own (``Source.stored_headers``: event ids, timestamps). Everything else is dropped:
# credentials, signatures (useless without the secret, and bound to the body they sign),
# cookies and the client addresses proxies add (x-forwarded-for, x-real-ip).
STORED_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-length", "user-agent", "x-request-id"}
)
# Names Hirehook gives its own markers (``Event.markers``: the polled resource, the event name
# an HR Manager URL carried). A request header with this prefix is never stored, whatever a
# source allows: a sender could otherwise forge a marker a re-parse trusts.
INTERNAL_PREFIX = "hirehook-"


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
    # What Hirehook itself knows of the event and a re-parse needs (``hirehook-*`` names),
    # stored apart from the request's headers (``record.markers``).
    markers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the intake did with an event; ``answer`` is None for a record nobody awaited."""

    record_id: uuid.UUID
    answer: Answer | None
    duplicate: bool
    # Its job is the request path's to publish (app.intake.publisher): published with its
    # batch, or held back and published with later ones; nobody else publishes it.
    queued: bool = False


AnswerFor = Callable[[uuid.UUID], Answer]
# A batch's result for one record: its outcome, and the publish of the batch's new jobs when
# it started at once (None when it was held back, or made no job: a duplicate, an unknown
# type, a quarantined event).
Written = tuple[Outcome, "asyncio.Future[int] | None"]


def storable_headers(
    headers: Mapping[str, str], allowed: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The request headers kept with a record: :data:`STORED_HEADERS` and ``allowed``
    (lower-case names), never one named like an internal marker, nothing else."""
    return {
        k.lower(): v
        for k, v in headers.items()
        if (k.lower() in STORED_HEADERS or k.lower() in allowed)
        and not k.lower().startswith(INTERNAL_PREFIX)
    }


def _key(record: NewRecord) -> records.Key:
    return (record.tenant_id, record.source, record.dedupe_key)


def replayed(stored: StoredAnswer) -> Outcome:
    """The outcome of a duplicate: the stored record and the answer it was given."""
    answer = None if stored.status is None else Answer(stored.status, stored.body, stored.headers)
    return Outcome(stored.record_id, answer, duplicate=True)


class Intake:
    """Records events exactly once and publishes their jobs after commit."""

    def __init__(
        self,
        engine: AsyncEngine,
        queue: Queue,
        *,
        db_timeout_s: float,
        writers: int = 2,
        max_batch: int = 256,
        publish_interval_s: float = 0.0,
        stored_headers: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        # ``engine`` runs in autocommit: one statement is a single ACID transaction, and
        # BEGIN/COMMIT round trips would buy nothing on the request path.
        self._engine = engine
        self._queue = queue
        self._db_timeout_s = db_timeout_s
        self._batches: GroupCommit[NewRecord, Written] = GroupCommit(
            self._write, writers=writers, max_batch=max_batch
        )
        self._publishing: set[asyncio.Task[Any]] = set()
        self._publisher = Publisher(queue.enqueue_batch, interval_s=publish_interval_s)
        # The request id of each record waiting for its batch (app.routers.request_context): a
        # batch's writer runs in whichever request's context started it, so ids travel explicitly.
        self._request_ids: dict[uuid.UUID, str] = {}
        # Per source, the headers it keeps beside the common ones (see app.sources).
        self._stored_headers = dict(stored_headers or {})

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
        threads: Sequence[str],
        deadline: Deadline | None = None,
        conn: AsyncConnection | None = None,
    ) -> ThreadHead | None:
        """The newest record of ``threads`` together, if any."""
        return await self._run(
            conn,
            deadline,
            lambda db: records.latest_in_thread(
                db, tenant_id=tenant_id, source=source, threads=threads
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
        here; :meth:`record_many`); without it they run as one statement of their own under
        ``deadline``.
        """
        if conn is not None:
            [outcome] = await self.record_many([event], conn=conn, answer_for=answer_for)
            return outcome
        record_id = uuid7()
        answer = answer_for(record_id) if answer_for is not None else None
        ack_ms = None if deadline is None else int((time.monotonic() - deadline.started) * 1000)
        new = self._new_record(event, record_id, answer, ack_ms)
        started = time.monotonic()
        outcome = await self._submit(new, deadline)
        _INTAKE_SECONDS(event.connection.source).observe(time.monotonic() - started)
        if not outcome.duplicate:
            outcome = Outcome(record_id, answer, duplicate=False, queued=outcome.queued)
        self._counted(event, outcome)
        return outcome

    async def record_many(
        self,
        events: Sequence[Event],
        *,
        conn: AsyncConnection,
        answer_for: AnswerFor | None = None,
    ) -> list[Outcome]:
        """Record events and their outbox rows in the caller's transaction (a poll page with
        its cursor, a notification's event objects: all or none), in one statement plus one
        read for the duplicates; an outcome per event, in order. Nothing is committed or
        published here: after commit, :meth:`publish_many`."""
        if not events:
            return []
        answers: list[Answer | None] = []
        batch: list[NewRecord] = []
        for event in events:
            record_id = uuid7()
            answers.append(answer_for(record_id) if answer_for is not None else None)
            batch.append(self._new_record(event, record_id, answers[-1], None))
        started = time.monotonic()
        inserted = await records.insert_many(conn, batch, task=PROCESS_RECORD)
        # A repeat of an earlier event of the batch finds that event's record: the
        # transaction sees its own insert.
        stored = await records.find_many(conn, [_key(r) for r in batch if r.id not in inserted])
        elapsed_s = time.monotonic() - started
        outcomes: list[Outcome] = []
        for event, new, answer in zip(events, batch, answers, strict=True):
            if new.id in inserted:
                outcomes.append(Outcome(new.id, answer, duplicate=False))
            elif (found := stored.get(_key(new))) is not None:
                outcomes.append(replayed(found))
            else:  # pragma: no cover - the conflicting row is visible after the wait
                raise AppError(503, "Please retry.", "conflicting record vanished")
            _INTAKE_SECONDS(event.connection.source).observe(elapsed_s / len(batch))
        # Off the request path nobody else counts them (there, Intake._write does).
        await self._queue.count_duplicates(
            Counter((r.tenant_id, r.source) for r in batch if r.id not in inserted)
        )
        for event, outcome in zip(events, outcomes, strict=True):
            self._counted(event, outcome)
        return outcomes

    def _new_record(
        self, event: Event, record_id: uuid.UUID, answer: Answer | None, ack_ms: int | None
    ) -> NewRecord:
        info = event.connection
        return NewRecord(
            id=record_id,
            tenant_id=info.tenant_id,
            connection_id=info.id,
            source=info.source,
            dedupe_key=event.dedupe_key,
            event_type=event.event_type,
            known=event.known,
            subjects=event.subjects,
            thread=event.thread,
            headers=storable_headers(
                event.headers, self._stored_headers.get(info.source, frozenset())
            ),
            payload=event.payload,
            raw_body=event.raw_body,
            markers=event.markers,
            answer_status=None if answer is None else answer.status,
            answer_headers=None if answer is None else answer.headers,
            answer_body=None if answer is None else answer.body,
            problem="; ".join(event.problems) if event.problems else None,
            ack_ms=ack_ms,
        )

    @staticmethod
    def _counted(event: Event, outcome: Outcome) -> None:
        """The metrics and the log line of one recorded (or duplicate) event."""
        info = event.connection
        # Only modelled types name a series: the sender chooses the type string.
        event_type = event.event_type if event.known else OTHER
        if outcome.duplicate:
            _EVENTS(info.source, event_type, "duplicate").inc()
            log.info(
                "intake.duplicate",
                source=info.source,
                tenant=info.tenant_slug,
                record_id=str(outcome.record_id),
            )
            return
        recorded = "quarantined" if event.problems else "recorded"
        _EVENTS(info.source, event_type, recorded).inc()
        log.info(
            "intake.recorded",
            source=info.source,
            tenant=info.tenant_slug,
            event_type=event.event_type,
            record_id=str(outcome.record_id),
        )

    async def _submit(self, new: NewRecord, deadline: Deadline | None) -> Outcome:
        """``new`` written by the next batch, within the request's database window, and its
        job published if that starts at once (Redis waits do not count against the database
        window)."""
        timeout_s = deadline.database(self._db_timeout_s) if deadline else self._db_timeout_s
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if isinstance(request_id, str):
            self._request_ids[new.id] = request_id
        started = time.monotonic()
        try:
            outcome, published = await self._batches.submit(new, timeout_s)
        except DB_ERRORS as exc:
            # Whether or not the batch committed, the sender retries and a committed record
            # then answers as a duplicate: no 2xx is ever given for an unknown state.
            log.warning("intake.unavailable", error=type(exc).__name__)
            raise unavailable(f"database: {type(exc).__name__}") from exc
        finally:
            self._request_ids.pop(new.id, None)
            if deadline is not None:
                deadline.database_s += time.monotonic() - started
        if published is not None:
            # A quiet service answers once the job is queued, so its 2xx also means a worker
            # has been told (under load the publish is held back and nobody waits for it).
            # Shared by the whole batch: one request going away must not cancel it.
            await asyncio.shield(published)
        return outcome

    async def _write(self, batch: Sequence[NewRecord]) -> list[Written | BaseException]:
        """One batch: one statement for all its records (plus one read if some were
        duplicates); the new records' jobs are then handed to the publisher, whose Redis
        round trip is a task of its own, so a slow Redis never holds a writer (nor the next
        batch) back."""

        async def work() -> tuple[set[uuid.UUID], dict[records.Key, StoredAnswer]]:
            async with self._engine.connect() as db:
                inserted = await records.insert_many_alone(db, batch, task=PROCESS_RECORD)
                missing = [_key(r) for r in batch if r.id not in inserted]
                return inserted, await records.find_many(db, missing)

        try:
            inserted, stored = await run_bounded(work, self._db_timeout_s)
        except (IntegrityError, DataError):
            if len(batch) == 1:
                raise
            # One record the database refuses (a connection deleted meanwhile, ...) must not
            # fail the others: each is written on its own and only the culprit fails.
            log.warning("intake.batch_split", size=len(batch))
            results = await asyncio.gather(
                *(self._write([r]) for r in batch), return_exceptions=True
            )
            return [r[0] if isinstance(r, list) else r for r in results]
        jobs = [r.id for r in batch if r.id in inserted and r.known and r.problem is None]
        published = self._publish(jobs) if jobs else None
        duplicates = Counter((r.tenant_id, r.source) for r in batch if r.id not in inserted)
        if duplicates:
            # For the operators' duplicate ratio; nobody waits for it.
            self._track(
                asyncio.get_running_loop().create_task(self._queue.count_duplicates(duplicates))
            )
        outcomes: list[Written | BaseException] = []
        for new in batch:
            if new.id in inserted:
                outcomes.append((Outcome(new.id, None, duplicate=False, queued=True), published))
            elif (answer := stored.get(_key(new))) is not None:
                outcomes.append((replayed(answer), None))
            else:  # pragma: no cover - the conflicting row is visible after the wait
                outcomes.append(AppError(503, "Please retry.", "conflicting record vanished"))
        return outcomes

    def _publish(self, record_ids: list[uuid.UUID]) -> asyncio.Task[int] | None:
        request_id = self._request_ids.get(record_ids[0]) if len(record_ids) == 1 else None
        return self._publisher.publish(record_ids, request_id)

    def _track(self, task: asyncio.Task[Any]) -> None:
        # Held until done (asyncio keeps only weak references) and awaited by drain().
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def drain(self) -> None:
        """Let batches in flight finish (on shutdown)."""
        await self._batches.drain()
        await self._publisher.drain()
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

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
        markers: Mapping[str, str] | None = None,
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
            markers=markers or {},
        )

    async def publish(self, outcome: Outcome, *, known: bool) -> None:
        """After commit, hint the workers; the sweeper covers a failure here.

        Awaited before answering rather than run as a background task: a background task
        holds the keep-alive connection's cycle open and, under load, starved the enqueues.
        """
        if known and not outcome.duplicate and not outcome.queued:
            await self._queue.enqueue_record(outcome.record_id)

    async def publish_many(self, events: Sequence[Event], outcomes: Sequence[Outcome]) -> int:
        """After :meth:`record_many` committed, hint the workers of its new known records, a
        job each, in one round trip; how many were published. The sweeper covers a failure
        here."""
        new = [
            outcome.record_id
            for event, outcome in zip(events, outcomes, strict=True)
            if event.known and not outcome.duplicate and not outcome.queued
        ]
        return await self._queue.enqueue_records(new) if new else 0
