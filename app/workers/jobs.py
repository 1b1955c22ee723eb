"""The record job (enrich, upsert, owe a delivery) and the sweeper of both outboxes.

arq may run a job twice (a worker dies, the sweeper republishes), so every effect is applied
in the one transaction that also runs ``UPDATE outbox ... WHERE done_at IS NULL``: whichever
run commits that first keeps its effects, and the other's are rolled back. Only
:class:`arq.Retry` is retried by arq, so every transient failure is mapped to it explicitly,
after pushing ``available_at`` forward so the sweeper does not publish the job a second time.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from arq import Retry

from app.clients.base import ApiError, BudgetExhaustedError
from app.connections import ConnectionInfo
from app.db import DB_ERRORS
from app.errors import AppError
from app.metrics import DEAD_LETTERS
from app.queue import record_job_id
from app.services import Services
from app.store import dead_letters, records, work
from app.store.dead_letters import FailureKind
from app.store.normalized import upsert
from app.workers import delivery
from app.workers.context import Enrichment, EnrichmentError, RecordHandler, RecordRow

log = structlog.get_logger(__name__)
_jitter = random.Random()  # noqa: S311 - spreads retries; protects nothing


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
    ceiling: float = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    delay = ceiling / 2 + _jitter.uniform(0, ceiling / 2)
    return max(delay, retry_after_s or 0.0)


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


def _handlers(ctx: dict[str, Any]) -> dict[str, RecordHandler]:
    handlers: dict[str, RecordHandler] = ctx.get("handlers", {})
    return handlers


async def process_record(ctx: dict[str, Any], record_id: str) -> str:
    """Enrich one record and mark it done, at most once in effect."""
    services = _services(ctx)
    settings = services.settings
    rid = uuid.UUID(record_id)
    try:
        # One statement is its own transaction; BEGIN/COMMIT round trips would buy nothing.
        async with services.autocommit.connect() as conn:
            row = await work.claim(conn, "outbox", rid, lease_s=settings.worker_lease_s)
        if row is None:
            return "already-done"
        attempts: int = row.attempts
        connection: ConnectionInfo | None = await services.connections.by_id(row.connection_id)
    except DB_ERRORS as exc:
        log.warning("job.database_unavailable", record_id=record_id, error=type(exc).__name__)
        raise Retry(defer=settings.enrich_retry_base_s) from exc
    record = RecordRow(
        id=row.id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        source=row.source,
        event_type=row.event_type,
        payload=row.payload,
        subjects=dict(row.subjects or {}),
        headers=dict(row.headers),
        attempts=attempts,
        received_at=row.received_at,
        connection=connection,
    )
    # Every line of this run, the handler's and the clients' included, names the tenant.
    structlog.contextvars.bind_contextvars(
        tenant=connection.tenant_slug if connection else None, source=record.source
    )
    log_ctx = {"record_id": record_id, "source": record.source, "attempts": attempts}
    handler = _handlers(ctx).get(record.source)
    failure: Failure | None = None
    enrichment: Enrichment | None = None
    try:
        enrichment = await handler(services, record) if handler is not None else None
    except BudgetExhaustedError as exc:
        delay = exc.retry_after_s or settings.enrich_retry_base_s
        await _defer(services, rid, delay, str(exc), refund=True)
        log.info("job.budget_deferred", delay_s=round(delay, 3), **log_ctx)
        raise Retry(defer=delay) from exc
    except ApiError as exc:
        failure = classify_api_error(exc)
    except EnrichmentError as exc:
        failure = Failure(exc.kind, exc.reason, exc.detail, transient=False)
    except DB_ERRORS as exc:
        failure = Failure("pipeline", "database_error", type(exc).__name__, transient=True)
    except AppError as exc:
        # Raised by shared lookups (connections) when the database is away.
        failure = Failure("pipeline", "unavailable", exc.debug_message, transient=exc.status >= 500)
    except Exception as exc:
        # A bug must not wedge the queue: it is retried with backoff, then dead-lettered.
        log.exception("job.handler_crashed", **log_ctx)
        failure = Failure("pipeline", "internal_error", type(exc).__name__, transient=True)
    if failure is not None:
        return await _fail(services, record, failure)
    return await _finish(services, record, enrichment)


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


async def _finish(services: Services, record: RecordRow, enrichment: Enrichment | None) -> str:
    owed = False
    written = 0
    try:
        async with services.engine.begin() as conn:
            if not await work.finish(conn, "outbox", record.id):
                # Another run completed first; its effects stand and ours are discarded.
                await conn.rollback()
                return "already-done"
            if enrichment is not None:
                for resource in enrichment.resources:
                    written += await upsert(
                        conn, tenant_id=record.tenant_id, source=record.source, resource=resource
                    )
                if enrichment.effects is not None:
                    await enrichment.effects(conn)
                slug = record.connection.tenant_slug if record.connection else ""
                event = await delivery.build_event(conn, record, enrichment, slug)
                owed = await delivery.create(conn, record, event)
            await records.set_state(conn, record.id, "processed")
    except DB_ERRORS as exc:
        log.warning("job.database_unavailable", record_id=str(record.id), error=type(exc).__name__)
        raise Retry(defer=services.settings.enrich_retry_base_s) from exc
    if owed:
        await services.queue.enqueue_delivery(record.id)
    log.info(
        "job.record_processed",
        record_id=str(record.id),
        source=record.source,
        written=written,
        delivery=owed,
    )
    return "processed"


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
    for table in work.TABLES:
        for _ in range(max_batches):
            async with services.engine.begin() as conn:
                ids = await work.sweep(conn, table, grace_s=grace, batch=batch, hold_s=hold)
            if not ids:
                break
            swept += len(ids)
            if table == "outbox":
                published += await services.queue.enqueue_records(ids)
            else:
                published += await services.queue.enqueue_deliveries(ids)
            if len(ids) < batch:
                break
    if swept:
        log.info("sweeper.republished", rows=swept, published=published)
    return published


__all__ = ["process_record", "record_job_id", "sweep_outbox"]
