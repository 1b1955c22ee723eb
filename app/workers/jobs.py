"""The record job and the outbox sweeper."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import text

from app.queue import record_job_id
from app.services import Services
from app.workers.context import RecordHandler, RecordRow

log = structlog.get_logger(__name__)

_CLAIM = text(
    """
    UPDATE outbox SET attempts = attempts + 1
    WHERE record_id = :id AND done_at IS NULL
    RETURNING attempts
    """
)
_LOAD = text(
    """
    SELECT id, tenant_id, connection_id, source, event_type, payload, headers FROM record
    WHERE id = :id
    """
)
_FINISH = text("UPDATE outbox SET done_at = now() WHERE record_id = :id AND done_at IS NULL")
_MARK = text("UPDATE record SET state = 'processed', processed_at = now() WHERE id = :id")
_SWEEP = text(
    """
    UPDATE outbox SET available_at = now()
    WHERE record_id IN (
        SELECT record_id FROM outbox
        WHERE done_at IS NULL AND available_at <= now() - make_interval(secs => :grace)
        ORDER BY available_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING record_id
    """
)


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


def _handlers(ctx: dict[str, Any]) -> dict[str, RecordHandler]:
    handlers: dict[str, RecordHandler] = ctx["handlers"]
    return handlers


async def process_record(ctx: dict[str, Any], record_id: str) -> str:
    """Run a record's source handler and mark it done, at most once in effect.

    arq may run this twice (a worker dies, the sweeper republishes); the final
    ``UPDATE ... WHERE done_at IS NULL`` decides which run's effects are kept.
    """
    services = _services(ctx)
    rid = uuid.UUID(record_id)
    async with services.engine.begin() as conn:
        attempts = (await conn.execute(_CLAIM, {"id": rid})).scalar_one_or_none()
        row = (await conn.execute(_LOAD, {"id": rid})).first() if attempts is not None else None
    if attempts is None or row is None:
        return "already-done"
    record = RecordRow(
        id=row.id,
        tenant_id=row.tenant_id,
        connection_id=row.connection_id,
        source=row.source,
        event_type=row.event_type,
        payload=row.payload,
        headers=dict(row.headers),
        attempts=attempts,
    )
    handler = _handlers(ctx).get(record.source)
    effects = await handler(services, record) if handler is not None else None
    async with services.engine.begin() as conn:
        finished = (await conn.execute(_FINISH, {"id": rid})).rowcount
        if not finished:
            # Another run completed first; its effects stand and ours are discarded.
            await conn.rollback()
            return "already-done"
        if effects is not None:
            await effects(conn)
        await conn.execute(_MARK, {"id": rid})
    log.info("job.record_processed", record_id=record_id, source=record.source)
    return "processed"


async def sweep_outbox(ctx: dict[str, Any], *, batch: int = 500) -> int:
    """Republish outbox rows committed but not finished in time (Redis lost them, or a crash)."""
    services = _services(ctx)
    async with services.engine.begin() as conn:
        ids = (
            (
                await conn.execute(
                    _SWEEP, {"grace": services.settings.outbox_grace_s, "batch": batch}
                )
            )
            .scalars()
            .all()
        )
    published = 0
    for rid in ids:
        if await services.queue.enqueue_record(rid) == "queued":
            published += 1
    if ids:
        log.info("sweeper.republished", pending=len(ids), published=published)
    return published


__all__ = ["process_record", "record_job_id", "sweep_outbox"]
