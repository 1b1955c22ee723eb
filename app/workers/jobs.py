"""The record job (enrich, upsert, owe a delivery) and the sweeper of both outboxes.

arq may run a job twice (a worker dies, the sweeper republishes), so every effect is applied
in the one transaction that also runs ``UPDATE outbox ... WHERE done_at IS NULL``: whichever
run commits that first keeps its effects, and the other's are rolled back. Only
:class:`arq.Retry` is retried by arq, so every transient failure is mapped to it explicitly,
after pushing ``available_at`` forward so the sweeper does not publish the job a second time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from arq import Retry
from sqlalchemy.ext.asyncio import AsyncConnection

from app.clients.base import ApiError, BudgetExhaustedError
from app.intake.connections import ConnectionInfo
from app.platform.backoff import EQUAL_JITTER, Backoff
from app.platform.db import DB_ERRORS
from app.platform.errors import AppError
from app.platform.metrics import DEAD_LETTERS, RECORDS_PROCESSED, Children
from app.platform.queue import record_job_id
from app.services import Services
from app.store import dead_letters, deliveries, records, work
from app.store.dead_letters import FailureKind
from app.store.normalized import upsert_view
from app.workers.context import (
    Enrichment,
    EnrichmentError,
    RecordHandler,
    RecordRow,
    process_slots,
)
from app.workers.delivery import deliver_owed
from app.workers.normalized_event import Views, build_event, delivery_row, view_key

log = structlog.get_logger(__name__)
_RECORDS_PROCESSED = Children(RECORDS_PROCESSED)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run did not finish, and whether another run may."""

    kind: FailureKind
    reason: str
    detail: str
    transient: bool
    retry_after_s: float | None = None


def classify_api_error(exc: ApiError) -> Failure:
    """Map a classified API error onto a retry or a dead-letter reason."""
    detail = str(exc)
    if exc.transient:
        if exc.status == 429:
            reason = "rate_limited"
        elif exc.status is not None and exc.status >= 500:
            reason = "ats_server_error"
        elif exc.status is None:
            reason = "ats_unreachable"
        else:
            reason = "ats_invalid_response"
        return Failure("pipeline", reason, detail, transient=True, retry_after_s=exc.retry_after_s)
    if exc.config_problem:
        if exc.status is None:
            reason = "invalid_configuration"
        elif exc.status == 401:
            reason = "credentials_refused"
        else:
            # 403, or a source's own way of saying so (iCIMS: 404 RESOURCE_ACCESS_DENIED).
            reason = "permission_denied"
        return Failure("configuration", reason, detail, transient=False)
    reason = "not_found" if exc.status == 404 else "rejected"
    return Failure("pipeline", reason, detail, transient=False)


def backoff(attempts: int, *, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Capped exponential backoff with equal jitter; never shorter than the ATS asked."""
    policy = Backoff(base_s, cap_s, EQUAL_JITTER)
    return policy.delay(attempts, retry_after_s=retry_after_s)


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


async def _enrich_bounded(
    ctx: dict[str, Any], record: RecordRow
) -> Enrichment | Failure | _Waiting | None:
    async with process_slots(ctx, "handler_slots"):
        return await _enrich(ctx, record)


def _handlers(ctx: dict[str, Any]) -> dict[str, RecordHandler]:
    handlers: dict[str, RecordHandler] = ctx.get("handlers", {})
    return handlers


@dataclass(frozen=True, slots=True)
class _Waiting:
    """The run only waited for the rate budget: deferred with its attempt given back."""

    delay_s: float
    error: str


def _tenant(record: RecordRow) -> str | None:
    """The slug of the record's tenant, for its log lines (None if its connection is gone)."""
    return record.connection.tenant_slug if record.connection is not None else None


def _record(row: Any, connection: ConnectionInfo | None) -> RecordRow:
    return RecordRow(
        id=row.id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        source=row.source,
        event_type=row.event_type,
        payload=row.payload,
        subjects=dict(row.subjects or {}),
        headers=dict(row.headers),
        attempts=row.attempts,
        received_at=row.received_at,
        connection=connection,
    )


async def _enrich(  # noqa: PLR0911 - one return per kind of failure
    ctx: dict[str, Any], record: RecordRow
) -> Enrichment | Failure | _Waiting | None:
    """Run the source's handler; every failure becomes a value, nothing escapes."""
    # The handler's and the clients' lines name the record and its tenant. In a batch each
    # record's run is a task of its own (asyncio.gather), so the binding stays with it.
    structlog.contextvars.bind_contextvars(
        record_id=str(record.id), tenant=_tenant(record), source=record.source
    )
    services = _services(ctx)
    handler = _handlers(ctx).get(record.source)
    try:
        return await handler(services, record) if handler is not None else None
    except BudgetExhaustedError as exc:
        return _Waiting(exc.retry_after_s or services.settings.enrich_retry_base_s, str(exc))
    except ApiError as exc:
        return classify_api_error(exc)
    except EnrichmentError as exc:
        return Failure(exc.kind, exc.reason, exc.detail, transient=False)
    except DB_ERRORS as exc:
        return Failure("pipeline", "database_error", type(exc).__name__, transient=True)
    except AppError as exc:
        # Raised by shared lookups (connections) when the database is away.
        return Failure("pipeline", "unavailable", exc.debug_message, transient=exc.status >= 500)
    except Exception as exc:
        # A bug must not wedge the queue: it is retried with backoff, then dead-lettered.
        log.exception(
            "job.handler_crashed",
            record_id=str(record.id),
            tenant=_tenant(record),
            source=record.source,
            attempts=record.attempts,
        )
        return Failure("pipeline", "internal_error", type(exc).__name__, transient=True)


async def process_record(ctx: dict[str, Any], record_id: str) -> str:
    """Enrich one record and mark it done, at most once in effect."""
    services = _services(ctx)
    settings = services.settings
    started = time.monotonic()
    rid = uuid.UUID(record_id)
    try:
        # One statement is its own transaction; BEGIN/COMMIT round trips would buy nothing.
        async with services.autocommit.connect() as conn:
            row = await work.claim(conn, "outbox", rid, lease_s=settings.worker_lease_s)
        if row is None:
            return "already-done"
        record = _record(row, await services.connections.by_id(row.connection_id))
    except DB_ERRORS as exc:
        log.warning("job.database_unavailable", record_id=record_id, error=type(exc).__name__)
        raise Retry(defer=settings.enrich_retry_base_s) from exc
    result = await _enrich_bounded(ctx, record)
    if isinstance(result, _Waiting):
        await _defer(services, rid, result.delay_s, result.error, refund=True)
        log.info(
            "job.budget_deferred",
            record_id=record_id,
            tenant=_tenant(record),
            source=record.source,
            attempts=record.attempts,
            delay_s=round(result.delay_s, 3),
        )
        raise Retry(defer=result.delay_s)
    if isinstance(result, Failure):
        return await _fail(services, record, result)
    outcome, owed = await _finish(services, record, result)
    if owed.deliveries:
        await deliver_owed(ctx, owed, started)
    return outcome


async def process_records(ctx: dict[str, Any], record_ids: list[str]) -> str:
    """Enrich a batch of records (one group-committed intake batch) with one claim and one
    finishing transaction for all of them, at most once in effect, like :func:`process_record`.

    A record that cannot finish with the others (a retry, a rate-budget wait, a database
    error while finishing) continues as a job of its own, so one record never holds back or
    repeats the rest.
    """
    services = _services(ctx)
    settings = services.settings
    started = time.monotonic()
    try:
        async with services.autocommit.connect() as conn:
            rows = await work.claim_many(
                conn,
                "outbox",
                [uuid.UUID(i) for i in record_ids],
                lease_s=settings.worker_lease_s,
                slack_s=settings.claim_slack_s,
            )
        batch = [_record(row, await services.connections.by_id(row.connection_id)) for row in rows]
    except DB_ERRORS as exc:
        log.warning("job.database_unavailable", records=len(record_ids), error=type(exc).__name__)
        raise Retry(defer=settings.enrich_retry_base_s) from exc
    results = await asyncio.gather(*(_enrich_bounded(ctx, record) for record in batch))
    finished: list[tuple[RecordRow, Enrichment | None]] = []
    for record, result in zip(batch, results, strict=True):
        if isinstance(result, _Waiting):
            await _defer(services, record.id, result.delay_s, result.error, refund=True)
            await services.queue.enqueue_record(record.id, defer_s=result.delay_s)
        elif isinstance(result, Failure):
            try:
                await _fail(services, record, result)
            except Retry as retry:
                await services.queue.enqueue_record(
                    record.id, defer_s=(retry.defer_score or 0) / 1000
                )
        else:
            finished.append((record, result))
    if finished and (owed := await _finish_many(services, finished)).deliveries:
        await deliver_owed(ctx, owed, started)
    return f"processed {len(finished)} of {len(record_ids)}"


async def _defer(
    services: Services, rid: uuid.UUID, delay: float, error: str, *, refund: bool
) -> None:
    # The sweeper leaves the row alone until the deferred run is due (plus its grace).
    async with services.engine.begin() as conn:
        await work.defer(conn, "outbox", rid, delay_s=delay, error=error, refund=refund)


async def _fail(services: Services, record: RecordRow, failure: Failure) -> str:
    settings = services.settings
    log_ctx = {
        "record_id": str(record.id),
        "tenant": _tenant(record),
        "source": record.source,
        "attempts": record.attempts,
        "reason": failure.reason,
        "detail": failure.detail,
    }
    if failure.transient and record.attempts < settings.enrich_max_attempts:
        delay = backoff(
            record.attempts,
            base_s=settings.enrich_retry_base_s,
            cap_s=settings.enrich_retry_cap_s,
            retry_after_s=failure.retry_after_s,
        )
        await _defer(services, record.id, delay, failure.detail, refund=False)
        log.info("job.retrying", delay_s=round(delay, 3), **log_ctx)
        raise Retry(defer=delay)
    async with services.engine.begin() as conn:
        if not await work.give_up(conn, "outbox", record.id, error=failure.detail):
            return "already-done"
        await records.set_state(conn, record.id, "dead_letter")
        await dead_letters.bury(
            conn,
            record_id=record.id,
            stage="enrichment",
            kind=failure.kind,
            reason=failure.reason,
            detail=failure.detail,
            attempts=record.attempts,
        )
    DEAD_LETTERS.labels("enrichment", failure.kind, failure.reason).inc()
    log.warning("job.dead_letter", kind=failure.kind, **log_ctx)
    return "dead-letter"


async def _upsert_in_order(
    conn: AsyncConnection, todo: Sequence[tuple[RecordRow, Enrichment]]
) -> tuple[Counter[uuid.UUID], Views]:
    """Upsert the resources of every record in ``todo``; rows written per record, and the
    stored view of each row written (the last write of a row in this transaction wins).

    Always in one global order (kind, id, version), whether one record's job or a batch's:
    jobs that name the same candidates (a storm of events about a few people) then lock their
    rows in the same order instead of deadlocking, which would fail and retry them all.
    """
    written: Counter[uuid.UUID] = Counter()
    views: Views = {}
    for record, resource in sorted(
        ((r, res) for r, e in todo for res in e.resources),
        key=lambda pair: (pair[1].kind, pair[1].external_id, pair[1].version),
    ):
        view = await upsert_view(
            conn, tenant_id=record.tenant_id, source=record.source, resource=resource
        )
        if view is not None:
            written[record.id] += 1
            views[view_key(record, resource)] = view
    return written, views


async def _event(
    conn: AsyncConnection, record: RecordRow, enrichment: Enrichment, views: Views
) -> dict[str, Any]:
    """The source's own effects, then the normalized event built from the stored state."""
    if enrichment.effects is not None:
        await enrichment.effects(conn)
        # The source's effects may write the same rows: read what they left.
        views = {}
    slug = record.connection.tenant_slug if record.connection else ""
    return await build_event(conn, record, enrichment, slug, views)


async def _owed(
    conn: AsyncConnection, todo: Sequence[tuple[RecordRow, Enrichment]]
) -> tuple[Counter[uuid.UUID], list[tuple[uuid.UUID, int, str, bytes]]]:
    """The effects of finished records (one record's job or a batch's) before their finish,
    in the caller's transaction: their resources upserted and their normalized events built.
    Rows written per record, and the delivery rows their events make."""
    written, views = await _upsert_in_order(conn, todo)
    if any(enrichment.effects is not None for _, enrichment in todo):
        # A source's effects may write rows another record's event shows.
        views = {}
    return written, [delivery_row(r, await _event(conn, r, e, views)) for r, e in todo]


async def _commit(
    services: Services, finished: Sequence[tuple[RecordRow, Enrichment | None]]
) -> tuple[set[uuid.UUID], Counter[uuid.UUID], deliveries.Owed]:
    """Finish ``finished`` records (one record's job or a batch's) and apply the effects of
    those this run won: the records it finished, rows written per record, and the deliveries
    owed now, claimed for this job to send once committed. Raises the database's errors.

    The finish is one statement (app.store.work.finish_processed) after the effects. Records
    that write nothing before it (no resources, no source effects: a KeldairHR event) need no
    transaction around it. Otherwise, if another run finished some record first, the
    transaction is rolled back and the rest are done again without it: a run that lost
    never lands its effects.
    """
    lease = services.settings.worker_lease_s
    ids = sorted(record.id for record, _ in finished)
    todo = [(r, e) for r, e in finished if e is not None]
    if not any(e.resources or e.effects is not None for _, e in todo):
        async with services.autocommit.connect() as conn:
            _, rows = await _owed(conn, todo)
            won, owed = await work.finish_processed(conn, ids, rows, lease_s=lease)
        return won, Counter(), owed
    while ids:
        async with services.engine.begin() as conn:
            written, rows = await _owed(conn, todo)
            won, owed = await work.finish_processed(conn, ids, rows, lease_s=lease)
            if len(won) == len(ids):
                return won, written, owed
            await conn.rollback()
        ids = sorted(won)
        todo = [(r, e) for r, e in todo if r.id in won]
    return set(), Counter(), deliveries.Owed()


def _log_processed(record: RecordRow, written: int, *, delivery: bool) -> None:
    log.info(
        "job.record_processed",
        record_id=str(record.id),
        tenant=_tenant(record),
        source=record.source,
        written=written,
        delivery=delivery,
    )


async def _finish(
    services: Services, record: RecordRow, enrichment: Enrichment | None
) -> tuple[str, deliveries.Owed]:
    """The job's outcome (``processed`` or ``already-done``), and the delivery its
    transaction owed (sent by the caller, as a batch's are)."""
    try:
        won, written, owed = await _commit(services, [(record, enrichment)])
    except DB_ERRORS as exc:
        log.warning(
            "job.database_unavailable",
            record_id=str(record.id),
            tenant=_tenant(record),
            error=type(exc).__name__,
        )
        raise Retry(defer=services.settings.enrich_retry_base_s) from exc
    if not won:
        # Another run completed first; its effects stand and ours were discarded.
        return "already-done", owed
    _RECORDS_PROCESSED(record.source).inc()
    _log_processed(record, written[record.id], delivery=bool(owed.deliveries))
    return "processed", owed


async def _finish_many(
    services: Services, finished: list[tuple[RecordRow, Enrichment | None]]
) -> deliveries.Owed:
    """Mark a batch done and apply the effects of the runs that won; the deliveries it owes
    (sent by the caller)."""
    try:
        won, written, owed = await _commit(services, finished)
    except DB_ERRORS as exc:
        # Nothing of the batch committed: each record retries as a job of its own.
        delay = services.settings.enrich_retry_base_s
        log.warning("job.database_unavailable", records=len(finished), error=type(exc).__name__)
        for record, _ in finished:
            await services.queue.enqueue_record(record.id, defer_s=delay)
        return deliveries.Owed()
    owed_ids = owed.ids
    for record, enrichment in finished:
        if record.id in won:
            _RECORDS_PROCESSED(record.source).inc()
            if enrichment is not None:
                _log_processed(record, written[record.id], delivery=record.id in owed_ids)
    return owed


async def sweep_outbox(ctx: dict[str, Any], *, batch: int = 500, max_batches: int = 200) -> int:
    """Republish work committed but not finished in time (Redis lost it, or a worker died).

    Batches until both tables are drained (at most ``max_batches`` per run, so one run stays
    inside its cron timeout); each batch is one short transaction and one Redis pipeline.
    """
    services = _services(ctx)
    grace = services.settings.outbox_grace_s
    # Swept rows wait a sweep interval before they count as lost again; it also keeps this
    # run's later batches from picking the rows it just republished.
    hold = float(services.settings.sweep_interval_s)
    published = swept = 0
    # Rows queued after the oldest job still waiting may be waiting behind it: a backlog the
    # workers have not reached yet is not lost (app.store.work.sweep).
    oldest = await services.queue.oldest_queued_s()
    for table in work.TABLES:
        for _ in range(max_batches):
            async with services.engine.begin() as conn:
                ids = await work.sweep(
                    conn, table, grace_s=grace, batch=batch, hold_s=hold, oldest_queued_s=oldest
                )
            if not ids:
                break
            swept += len(ids)
            if table == "outbox":
                # Batch jobs, as the API publishes: a backlog drains at batch speed.
                published += await services.queue.enqueue_batch(ids)
            else:
                published += await services.queue.enqueue_deliveries(ids)
            if len(ids) < batch:
                break
    if swept:
        log.info("sweeper.republished", rows=swept, published=published)
    return published


__all__ = ["process_record", "process_records", "record_job_id", "sweep_outbox"]
