"""Delivery of one normalized event per record to the tenant's destination, signed with
Standard Webhooks (``webhook-id`` = record id, so the vendor can drop a repeat)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog
from arq import Retry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.clients.base import parse_retry_after
from app.services import Services
from app.verifiers import standard_webhooks as swh
from app.workers import dead_letters
from app.workers.context import Enrichment, FailureKind, RecordRow
from app.workers.normalized import stored_view

log = structlog.get_logger(__name__)
_jitter = random.Random()  # noqa: S311 - spreads retries; protects nothing

_CREATE = text(
    """
    INSERT INTO delivery (record_id, tenant_id, event_type, body)
    SELECT :id, :tenant_id, :event_type, :body
    WHERE EXISTS (SELECT 1 FROM destination WHERE tenant_id = :tenant_id AND enabled)
    ON CONFLICT (record_id) DO NOTHING
    RETURNING record_id
    """
)
_CLAIM = text(
    """
    UPDATE delivery SET attempts = attempts + 1,
                        available_at = now() + make_interval(secs => :lease)
    WHERE record_id = :id AND done_at IS NULL
    RETURNING attempts, tenant_id, body
    """
)
_DESTINATION = text("SELECT url, secret FROM destination WHERE tenant_id = :tenant_id AND enabled")
_DONE = text(
    """
    UPDATE delivery SET done_at = now(), last_status = :status, last_error = NULL
    WHERE record_id = :id AND done_at IS NULL
    """
)
_DEFER = text(
    """
    UPDATE delivery SET available_at = now() + make_interval(secs => :delay),
                        last_status = :status, last_error = :error
    WHERE record_id = :id AND done_at IS NULL
    """
)
_GIVE_UP = text(
    """
    UPDATE delivery SET done_at = now(), last_status = :status, last_error = :error
    WHERE record_id = :id AND done_at IS NULL
    """
)


async def build_event(
    conn: AsyncConnection, record: RecordRow, enrichment: Enrichment, tenant_slug: str
) -> dict[str, Any]:
    """The normalized event for a record, from the stored (newest) state of what it names."""
    views: dict[str, list[dict[str, Any]]] = {"candidate": [], "job": [], "application": []}
    seen: set[tuple[str, str]] = set()
    for resource in enrichment.resources:
        if (resource.kind, resource.external_id) in seen:
            continue
        seen.add((resource.kind, resource.external_id))
        view = await stored_view(
            conn,
            tenant_id=record.tenant_id,
            source=record.source,
            kind=resource.kind,
            external_id=resource.external_id,
        )
        if view is not None:
            views[resource.kind].append(view)
    data: dict[str, Any] = {
        "record_id": str(record.id),
        "tenant": tenant_slug,
        "source": record.source,
        "source_event_type": record.event_type,
        "received_at": record.received_at.isoformat() if record.received_at else None,
        "candidate": views["candidate"][0] if views["candidate"] else None,
        "job": views["job"][0] if views["job"] else None,
        "applications": views["application"],
        **enrichment.data,
    }
    return {
        "type": enrichment.event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data,
    }


async def create(conn: AsyncConnection, record: RecordRow, event: dict[str, Any]) -> bool:
    """Owe the event to the tenant's destination, if it has one; True if a delivery was made."""
    created = await conn.execute(
        _CREATE,
        {
            "id": record.id,
            "tenant_id": record.tenant_id,
            "event_type": event["type"],
            "body": orjson.dumps(event),
        },
    )
    return created.first() is not None


def signed_headers(record_id: str, body: bytes, secret: str, now: float) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (a fresh timestamp each time)."""
    return {**swh.signed_headers(record_id, body, secret, now), "user-agent": "Hirehook/0.1"}


def next_delay(schedule: Sequence[float], attempts: int, retry_after_s: float | None) -> float:
    """The wait after failed attempt ``attempts``: the schedule's step, +-20%, never below
    the destination's ``Retry-After``."""
    step = schedule[min(attempts, len(schedule)) - 1]
    return max(step * (0.8 + 0.4 * _jitter.random()), retry_after_s or 0.0)


async def deliver_record(ctx: dict[str, Any], record_id: str) -> str:
    """POST one record's normalized event; retried on its own schedule, then dead-lettered."""
    services: Services = ctx["services"]
    settings = services.settings
    rid = uuid.UUID(record_id)
    async with services.engine.begin() as conn:
        claimed = (
            await conn.execute(_CLAIM, {"id": rid, "lease": settings.worker_lease_s})
        ).first()
        destination = (
            (await conn.execute(_DESTINATION, {"tenant_id": claimed.tenant_id})).first()
            if claimed is not None
            else None
        )
    if claimed is None:
        return "already-done"
    attempts: int = claimed.attempts
    body = bytes(claimed.body)
    if destination is None:
        detail = "the tenant has no enabled destination"
        await _give_up(
            services, rid, attempts, None, "configuration", "destination_missing", detail
        )
        return "dead-letter"
    secret = str(services.cipher.decrypt_json(destination.secret)["secret"])
    status: int | None = None
    retry_after: float | None = None
    try:
        response = await services.http.post(
            destination.url,
            content=body,
            headers=signed_headers(record_id, body, secret, time.time()),
            timeout=settings.delivery_timeout_s,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        # The exception's text may quote the URL, and a URL may carry a token: name only.
        error = f"destination unreachable: {type(exc).__name__}"
    else:
        status = response.status_code
        if response.is_success:
            async with services.engine.begin() as conn:
                await conn.execute(_DONE, {"id": rid, "status": status})
            log.info("delivery.delivered", record_id=record_id, status=status, attempts=attempts)
            return "delivered"
        error = f"destination answered {status}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 410:
        # Standard Webhooks: 410 Gone means the endpoint is retired; retrying cannot help.
        await _give_up(services, rid, attempts, status, "configuration", "destination_gone", error)
        return "dead-letter"
    schedule = settings.delivery_retry_schedule_s
    if attempts > len(schedule):
        kind: FailureKind = "configuration" if status in (401, 403, 404) else "pipeline"
        reason = "destination_refused" if kind == "configuration" else "delivery_exhausted"
        await _give_up(services, rid, attempts, status, kind, reason, error)
        return "dead-letter"
    delay = next_delay(schedule, attempts, retry_after)
    async with services.engine.begin() as conn:
        await conn.execute(_DEFER, {"id": rid, "delay": delay, "status": status, "error": error})
    log.info(
        "delivery.retrying", record_id=record_id, attempts=attempts, error=error, delay_s=delay
    )
    raise Retry(defer=delay)


async def _give_up(
    services: Services,
    rid: uuid.UUID,
    attempts: int,
    status: int | None,
    kind: FailureKind,
    reason: str,
    detail: str,
) -> None:
    async with services.engine.begin() as conn:
        given_up = await conn.execute(_GIVE_UP, {"id": rid, "status": status, "error": detail})
        if given_up.rowcount:
            await dead_letters.bury(
                conn,
                record_id=rid,
                stage="delivery",
                kind=kind,
                reason=reason,
                detail=detail,
                attempts=attempts,
            )
    log.warning("delivery.dead_letter", record_id=str(rid), kind=kind, reason=reason, detail=detail)
