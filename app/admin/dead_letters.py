"""Dead letters: records a stage gave up on, kept apart by kind so the right person acts.

``configuration`` means the tenant must fix something (API credentials, permissions, its
destination, or the mapping of an event that did not fit its model); ``pipeline`` means the ATS
or our side failed past every retry. Either can be listed, retried after the fix (the stage
starts over with fresh attempts; a quarantined event is parsed again from its stored payload),
or discarded.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.admin import schemas as s
from app.admin.common import invalid, reparsers
from app.admin.replay import REPLAY_MAX
from app.intake.core import INTERNAL_PREFIX
from app.platform.errors import AppError
from app.platform.queue import PROCESS_RECORD, Queue
from app.schemas.parsed import Reparse
from app.services import Services
from app.store import dead_letters as dead_sql
from app.store import query, records, story, work
from app.store.dead_letters import DeadLetterView, Filters

log = structlog.get_logger(__name__)


def _dead_filters(action: s.DeadLetterAction, verb: str) -> dead_sql.Filters:
    named = (
        action.ids or action.kind or action.stage or action.tenant or action.source or action.reason
    )
    if not named and not action.all:
        raise invalid(f"Name the dead letters to {verb}: ids, filters, or all=true.")
    return dead_sql.Filters(
        ids=action.ids,
        kind=action.kind,
        stage=action.stage,
        tenant=action.tenant,
        source=action.source,
        reason=action.reason,
    )


async def list_dead_letters(
    services: Services,
    *,
    kind: dead_sql.FailureKind | None = None,
    stage: dead_sql.Stage | None = None,
    tenant: str | None = None,
    source: str | None = None,
    include_resolved: bool = False,
    limit: int = 200,
) -> list[s.DeadLetterView]:
    """Dead letters by cause (``configuration``: the tenant must fix something; ``pipeline``:
    the ATS or Hirehook failed past every retry), oldest first."""
    filters = dead_sql.Filters(
        kind=kind,
        stage=stage,
        tenant=tenant,
        source=source,
    )
    letters = await list_letters(
        services.engine, filters, include_resolved=include_resolved, limit=limit
    )
    return [s.DeadLetterView.model_validate(x, from_attributes=True) for x in letters]


def _none_open() -> AppError:
    """The 409 of letters named by id none of which is open: acting again does nothing."""
    return AppError(
        409,
        "None of the dead letters named is open (already retried, discarded or erased); "
        "`hirehook dead-letters list --resolved` shows how each was resolved.",
        code="not_open",
    )


async def retry_dead_letters(services: Services, *, action: s.DeadLetterAction) -> s.ActionResult:
    """Start the stage over for the matching open letters, once their cause is fixed; a
    quarantined event that still does not fit is counted in ``still_failing``."""
    filters = _dead_filters(action, "retry")
    # Parsing again happens now, so whether it failed again is known now; the other stages
    # run later in the workers.
    intake: list[dead_sql.DeadLetterView] = []
    if filters.stage in (None, "intake"):
        intake = await list_letters(
            services.engine, dataclasses.replace(filters, stage="intake"), limit=REPLAY_MAX
        )
    count = await retry(services.engine, services.queue, filters, reparsers(), note=action.note)
    if count == 0 and action.ids:
        raise _none_open()
    still = 0
    if intake:
        async with services.engine.connect() as conn:
            rows = await query.list_records(
                conn,
                query.RecordFilters(ids=tuple({x.record_id for x in intake})),
                limit=len(intake),
            )
        still = sum(1 for r in rows if r.state == "quarantined")
    log.info("admin.dead_letters_retried", count=count, still_failing=still)
    return s.ActionResult(count=count, still_failing=still)


async def discard_dead_letters(services: Services, *, action: s.DeadLetterAction) -> s.ActionResult:
    """Give up for good on the matching open letters, with a note saying why."""
    count = await discard(services.engine, _dead_filters(action, "discard"), note=action.note)
    if count == 0 and action.ids:
        raise _none_open()
    log.info("admin.dead_letters_discarded", count=count)
    return s.ActionResult(count=count)


async def dead_letter_groups(
    services: Services, *, tenant: str | None = None, source: str | None = None
) -> list[s.DeadLetterGroup]:
    """Open dead letters grouped by cause, reason and stage, with their counts: the number a
    retry of the group (its three as filters, with ``tenant`` and ``source``) starts over."""
    async with services.engine.connect() as conn:
        groups = await story.letter_groups(conn, tenant=tenant, source=source)
    return [s.DeadLetterGroup.model_validate(g, from_attributes=True) for g in groups]


async def list_letters(
    engine: AsyncEngine, filters: Filters, *, include_resolved: bool = False, limit: int = 200
) -> list[DeadLetterView]:
    """Dead letters matching ``filters``, oldest first."""
    async with engine.connect() as conn:
        return await dead_sql.list_letters(
            conn, filters, include_resolved=include_resolved, limit=limit
        )


async def retry(
    engine: AsyncEngine,
    queue: Queue,
    filters: Filters,
    reparsers: Mapping[str, Reparse] | None = None,
    *,
    note: str | None = None,
) -> int:
    """Start the stage over for each matching open letter (after the cause was fixed).

    A quarantined event is parsed again by its source (``reparsers``); if it still does not fit,
    a new letter with the current problems takes the old one's place.
    """
    async with engine.begin() as conn:
        letters = await dead_sql.resolve(conn, filters, "retried", note)
        enrich = [rid for rid, stage in letters if stage == "enrichment"]
        deliver = [rid for rid, stage in letters if stage == "delivery"]
        quarantined = [rid for rid, stage in letters if stage == "intake"]
        if quarantined:
            enrich += await _reparse(conn, quarantined, reparsers or {})
        reopened = [rid for rid in enrich if rid not in quarantined]
        if reopened:
            await work.reopen(conn, "outbox", reopened)
            await records.reset(conn, reopened)
        if deliver:
            await work.reopen(conn, "delivery", deliver)
    # After commit; whatever is not published here the sweeper publishes.
    await queue.enqueue_records(enrich)
    await queue.enqueue_deliveries(deliver)
    return len(letters)


def _reparse_headers(row: Any) -> dict[str, str]:
    """The stored request headers and Hirehook's own markers, as a re-parser reads them.

    A marker comes only from ``record.markers``: a ``hirehook-*`` header stored before intake
    refused them (a sender may have sent one) is ignored.
    """
    headers = {k: v for k, v in dict(row.headers).items() if not k.startswith(INTERNAL_PREFIX)}
    return {**headers, **dict(row.markers)}


async def _reparse(
    conn: AsyncConnection, record_ids: list[uuid.UUID], reparsers: Mapping[str, Reparse]
) -> list[uuid.UUID]:
    """Release the quarantined records that now parse; the ids owed an enrichment job."""
    released: list[uuid.UUID] = []
    for row in await records.quarantined(conn, record_ids):
        reparse = reparsers.get(row.source)
        parsed = None
        if reparse is not None:
            parsed = reparse(row.payload, _reparse_headers(row), dict(row.options))
        if parsed is None or parsed.problems:
            detail = "; ".join(parsed.problems) if parsed else f"no parser for {row.source}"
            await dead_sql.bury(
                conn,
                record_id=row.id,
                stage="intake",
                kind="configuration",
                reason="unexpected_shape",
                detail=detail,
                attempts=0,
            )
            log.info("dead_letter.still_unexpected", record_id=str(row.id), detail=detail)
            continue
        await records.reparsed(
            conn,
            row.id,
            event_type=parsed.event_type,
            known=parsed.known,
            subjects=parsed.subjects,
            task=PROCESS_RECORD,
        )
        if parsed.known:
            released.append(row.id)
    return released


async def discard(engine: AsyncEngine, filters: Filters, *, note: str | None = None) -> int:
    """Give up for good on each matching open letter (``note``: why, for the next reader)."""
    async with engine.begin() as conn:
        letters = await dead_sql.resolve(conn, filters, "discarded", note)
        for record_id, stage in letters:
            if stage == "enrichment":
                await records.set_state(conn, record_id, "discarded")
    return len(letters)


__all__ = ["DeadLetterView", "Filters", "discard", "list_letters", "retry"]
