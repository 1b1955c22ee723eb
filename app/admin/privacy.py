"""Personal data: retention, monthly partitions, erasure of one candidate, clean-up of work rows.

HTTP-free: the CLI, the worker's cron job, the SmartRecruiters worker (an ATS-side deletion)
and an admin API call these. What is stored and for how long: docs/privacy.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.clients.document_cache import DocumentCache
from app.intake.refusals import KEEP_DAYS as KEEP_REFUSALS_DAYS
from app.platform.settings import Settings
from app.store import attempts, partitions, privacy, refusals

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """One erasure as audited: what was erased (rows per table, Redis keys), when, by whom."""

    audit_id: int
    tenant: str
    source: str
    candidate_id: str
    actor: str
    erased_at: datetime
    counts: dict[str, int]


class UnknownTenantError(LookupError):
    """The tenant named for an erasure does not exist."""


async def erase(
    engine: AsyncEngine,
    redis: Redis,
    *,
    tenant: str,
    source: str,
    candidate_id: str,
    actor: str,
    email: str | None = None,
    batch: int = 1000,
) -> ErasureReport:
    """Erase everything stored about one candidate (the ATS's person/candidate id) of one
    tenant and source, and audit it.

    The records are those whose ``subjects`` name the candidate and those of the tenant whose
    stored bodies name the candidate's id (within the source) or e-mail address (``email``,
    else the one the normalized candidate holds; in every source of the tenant), scanned
    ``batch`` at a time. Records keep their dedupe key and first answer (a re-delivery stays a
    duplicate) and lose their headers, payload, raw body and subjects; their deliveries lose
    their bodies and their dead letters their details (and are closed); the candidate's
    normalized rows (candidate, applications) are deleted, and their documents cached in
    Redis. One transaction: the cached documents are deleted before it commits, so a Redis
    fault leaves nothing erased and nothing audited, and running it again is harmless.
    """
    cache = DocumentCache(redis, ttl_s=1)
    async with engine.begin() as conn:
        tenant_id = await privacy.tenant_id(conn, tenant)
        if tenant_id is None:
            raise UnknownTenantError(f"no tenant {tenant!r}")
        erased = await privacy.erase(
            conn,
            tenant_id=tenant_id,
            source=source,
            candidate_id=candidate_id,
            email=email,
            batch=batch,
        )
        keys = await cache.forget(tenant_id, source, [candidate_id, *erased.application_ids])
        counts = {
            "record": len(erased.record_ids),
            "dead_letter": erased.dead_letters,
            "delivery": erased.deliveries,
            "candidate": erased.candidates,
            "application": len(erased.application_ids),
            "redis_key": keys,
        }
        audit_id, erased_at = await privacy.audit(
            conn,
            tenant=tenant,
            source=source,
            candidate_id=candidate_id,
            actor=actor,
            counts=counts,
        )
    # The candidate id is what the audit row is for; logs carry only its audit id.
    log.info("privacy.erased", tenant=tenant, source=source, audit_id=audit_id, **counts)
    return ErasureReport(audit_id, tenant, source, candidate_id, actor, erased_at, counts)


@dataclass(slots=True)
class MaintenanceReport:
    """What one run of :func:`maintain` did."""

    partitions_made: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    records_purged: int = 0
    normalized_purged: int = 0
    deliveries_purged: int = 0
    outbox_cleaned: int = 0
    deliveries_cleaned: int = 0
    attempts_purged: int = 0
    refusals_purged: int = 0
    # False when the time budget ran out first; the next run continues.
    finished: bool = True


def droppable(
    parts: list[partitions.Partition], retentions: list[int | None], now: datetime
) -> list[partitions.Partition]:
    """The partitions every tenant's retention has passed the whole month of.

    ``retentions`` holds each tenant's effective retention in days (None: kept); one tenant
    that keeps its data keeps every partition, and row-wise purges serve the others.
    """
    if not retentions or any(days is None for days in retentions):
        return []
    cutoff = now - timedelta(days=max(d for d in retentions if d is not None))
    return [p for p in parts if p.end <= cutoff]


async def ensure_partitions(engine: AsyncEngine, now: datetime | None = None) -> list[str]:
    """Make this month's partition of ``record`` and the next two; the names made."""
    async with engine.begin() as conn:
        return await partitions.ensure(conn, now or datetime.now(UTC))


async def maintain(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime | None = None,
    budget_s: float = 240.0,
) -> MaintenanceReport:
    """Partitions ahead, expired partitions dropped, bodies past retention purged, finished
    work rows deleted: each batch of ``settings.purge_batch_size`` rows its own transaction."""
    now = now or datetime.now(UTC)
    stop_at = time.monotonic() + budget_s
    batch = settings.purge_batch_size
    report = MaintenanceReport()
    report.partitions_made = await ensure_partitions(engine, now)

    async with engine.connect() as conn:
        tenants = await privacy.tenants(conn)
        parts = await partitions.existing(conn)
    effective = [t.retention_days or settings.retention_days for t in tenants]
    for part in droppable(parts, effective or [settings.retention_days], now):
        try:
            async with engine.begin() as conn:
                await partitions.drop(conn, part.name)
        except DBAPIError as exc:
            # Most likely the lock timeout under load: the next run drops it.
            log.warning("privacy.partition_kept", partition=part.name, error=type(exc).__name__)
            report.finished = False
            continue
        report.partitions_dropped.append(part.name)

    async def drain(step: str, run: privacy.Step, **named: Any) -> int:
        total = 0
        while time.monotonic() < stop_at:
            async with engine.begin() as conn:
                done = await run(conn, limit=batch, **named)
            total += done
            if done < batch:
                return total
        report.finished = False
        log.warning("privacy.maintenance_budget_spent", step=step)
        return total

    for tenant in tenants:
        days = tenant.retention_days or settings.retention_days
        if days is None:
            continue
        since = {"tenant_id": tenant.id, "before": now - timedelta(days=days)}
        report.records_purged += await drain("records", privacy.purge_records, **since)
        report.normalized_purged += await drain("normalized", privacy.purge_normalized, **since)
        report.deliveries_purged += await drain("deliveries", privacy.purge_deliveries, **since)
        report.attempts_purged += await drain("attempts", attempts.purge, **since)
    report.outbox_cleaned = await drain(
        "outbox",
        privacy.clean,
        table="outbox",
        before=now - timedelta(hours=settings.outbox_keep_hours),
    )
    report.deliveries_cleaned = await drain(
        "delivery",
        privacy.clean,
        table="delivery",
        before=now - timedelta(days=settings.delivery_keep_days),
    )
    report.refusals_purged = await drain(
        "refusals", refusals.purge, before=now - timedelta(days=KEEP_REFUSALS_DAYS)
    )
    return report
