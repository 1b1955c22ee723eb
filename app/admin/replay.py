"""Replays: records reopened for enrichment and delivery, by id or by filter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import structlog

from app.admin import schemas as s
from app.admin.common import invalid, not_found
from app.admin.records import record_filters
from app.platform.errors import AppError
from app.services import Services
from app.store import admin as sql
from app.store import query

log = structlog.get_logger(__name__)


# One transaction reopens at most this many records, so a large replay holds no long locks.
REPLAY_BATCH = 500
# A filtered replay covers at most this many records per call (narrow the filter for more).
REPLAY_MAX = 100_000
# A filtered replay matching more records than this runs only with ``confirm`` (the count a
# dry run gave): a filter that narrows nothing must not reopen everything by accident.
REPLAY_CONFIRM_ABOVE = 1_000


async def replay(
    services: Services,
    *,
    actor: str,
    request: s.ReplayRequest,
    progress: Callable[[int, int], None] | None = None,
) -> s.ReplayResult:
    """Run enrichment (and failed deliveries) again for the named or matching records.

    Idempotent in effect: enrichment upserts are forward-only by version, so a second run
    updates the same normalized rows, and a delivery the destination acknowledged is never
    reopened (a record owes at most one delivery row). A record whose bodies were erased (or
    purged by retention) is skipped and counted: there is nothing left to send. Each batch
    commits with its entry in the ``replay`` log; jobs are published after each commit (the
    sweeper covers a lost one).
    ``progress(done, total)`` is called after each batch.
    """
    # Given both, even with an empty list, the caller meant something we cannot tell apart.
    if request.filters is not None and "record_ids" in request.model_fields_set:
        raise invalid("Name the records to replay: record_ids, or filters (not both).")
    if request.filters is None and not request.record_ids:
        raise invalid("Name the records to replay: record_ids, or filters (not both).")
    described: dict[str, Any]
    if request.filters is not None:
        filters = record_filters(request.filters)
        if filters == query.RecordFilters():
            raise invalid("Replaying every record needs at least one filter.")
        described = request.filters.model_dump(mode="json", exclude_none=True)
    else:
        filters = query.RecordFilters(ids=tuple(request.record_ids))
        described = {"record_ids": [str(i) for i in request.record_ids]}
    async with services.engine.connect() as conn:
        ids = await query.record_ids(conn, filters, limit=REPLAY_MAX + 1)
    if len(ids) > REPLAY_MAX:
        raise invalid(
            f"More than {REPLAY_MAX:,} records match; one replay reopens at most that many. "
            "Narrow the filters (received_from and received_to, a tenant, a source)."
        )
    if request.record_ids and not ids:
        raise not_found("None of the records named")
    if request.record_ids:
        await _refuse_unreplayable(services, ids)
    if request.dry_run:
        return s.ReplayResult(id=None, matched=len(ids), enrichments=0, deliveries=0, dry_run=True)
    _confirmed(request, len(ids))
    async with services.engine.begin() as conn:
        replay_id = await sql.start_replay(conn, actor=actor, filters=described)
    enrichments = deliveries = skipped = 0
    for start in range(0, len(ids), REPLAY_BATCH):
        batch = ids[start : start + REPLAY_BATCH]
        async with services.engine.begin() as conn:
            skipped += len(await sql.bodiless(conn, batch))
            enrich, deliver = await sql.reopen_for_replay(conn, batch, note=f"replay {replay_id}")
            await sql.add_to_replay(conn, replay_id, enrich)
        await services.queue.enqueue_records(enrich)
        await services.queue.enqueue_deliveries(deliver)
        enrichments += len(enrich)
        deliveries += len(deliver)
        if progress is not None:
            progress(start + len(batch), len(ids))
    log.info(
        "admin.replayed",
        replay_id=replay_id,
        actor=actor,
        matched=len(ids),
        enrichments=enrichments,
        deliveries=deliveries,
        skipped_erased=skipped,
    )
    return s.ReplayResult(
        id=replay_id,
        matched=len(ids),
        enrichments=enrichments,
        deliveries=deliveries,
        skipped_erased=skipped,
    )


async def _refuse_unreplayable(services: Services, ids: list[uuid.UUID]) -> None:
    """A 409 saying what to do instead when none of the records named can be replayed: a
    replay runs enrichment, which a quarantined event (it did not fit its model) or an event
    type this version does not model never reaches."""
    async with services.engine.connect() as conn:
        rows = await query.list_records(conn, query.RecordFilters(ids=tuple(ids)), limit=len(ids))
    if any(r.known and r.state != "quarantined" for r in rows):
        return
    if any(r.state == "quarantined" for r in rows):
        message = (
            "Nothing to replay: the record is quarantined (it did not fit its model). Name the "
            "body's fields on the connection (`hirehook connections set-payload-fields`, or "
            "Map fields in the console), which parses it again, or retry its intake dead "
            "letter (`hirehook dead-letters retry`) once the cause is fixed."
        )
    else:
        message = (
            "Nothing to replay: the record's event type is not one this version models; it is "
            "stored, never enriched or delivered."
        )
    raise AppError(409, message, code="not_replayable")


def _confirmed(request: s.ReplayRequest, matched: int) -> None:
    """Refuse a filtered replay of more than :data:`REPLAY_CONFIRM_ABOVE` records unless
    ``confirm`` allows at least as many as match (records named by id are explicit enough)."""
    if request.filters is None or matched <= REPLAY_CONFIRM_ABOVE:
        return
    if request.confirm is not None and request.confirm >= matched:
        return
    raise AppError(
        400,
        f"{matched} records match these filters; a replay of more than "
        f"{REPLAY_CONFIRM_ABOVE:,} runs only when confirmed. Send confirm={matched} (on the "
        f"command line --confirm {matched}) to replay them; dry_run=true (--dry-run) counts "
        "them without replaying.",
        code="confirmation_required",
    )
