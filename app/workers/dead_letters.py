"""Dead letters: records a stage gave up on, kept apart by kind so the right person acts.

``configuration`` means the tenant must fix something (API credentials, permissions, its
destination, or the mapping of an event that did not fit its model); ``pipeline`` means the ATS
or our side failed past every retry. Either can be listed, retried after the fix (the stage
starts over with fresh attempts; a quarantined event is parsed again from its stored payload),
or discarded.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.intake import INTERNAL_PREFIX
from app.queue import PROCESS_RECORD, Queue
from app.schemas.parsed import Reparse
from app.store import dead_letters, records, work
from app.store.dead_letters import DeadLetterView, Filters

log = structlog.get_logger(__name__)


async def list_letters(
    engine: AsyncEngine, filters: Filters, *, include_resolved: bool = False, limit: int = 200
) -> list[DeadLetterView]:
    """Dead letters matching ``filters``, oldest first."""
    async with engine.connect() as conn:
        return await dead_letters.list_letters(
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
        letters = await dead_letters.resolve(conn, filters, "retried", note)
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
            await dead_letters.bury(
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
        letters = await dead_letters.resolve(conn, filters, "discarded", note)
        for record_id, stage in letters:
            if stage == "enrichment":
                await records.set_state(conn, record_id, "discarded")
    return len(letters)


__all__ = ["DeadLetterView", "Filters", "discard", "list_letters", "retry"]
