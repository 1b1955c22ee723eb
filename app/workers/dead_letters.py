"""Dead letters: records a stage gave up on, kept apart by kind so the right person acts.

``configuration`` means the tenant must fix something (API credentials, permissions, its
destination); ``pipeline`` means the ATS or our side failed past every retry. Either can be
listed, retried after the fix (the stage starts over with fresh attempts), or discarded.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.queue import Queue
from app.store import dead_letters, records, work
from app.store.dead_letters import DeadLetterView, Filters


async def list_letters(
    engine: AsyncEngine, filters: Filters, *, include_resolved: bool = False, limit: int = 200
) -> list[DeadLetterView]:
    """Dead letters matching ``filters``, oldest first."""
    async with engine.connect() as conn:
        return await dead_letters.list_letters(
            conn, filters, include_resolved=include_resolved, limit=limit
        )


async def retry(engine: AsyncEngine, queue: Queue, filters: Filters) -> int:
    """Start the stage over for each matching open letter (after the cause was fixed)."""
    async with engine.begin() as conn:
        letters = await dead_letters.resolve(conn, filters, "retried")
        enrich = [rid for rid, stage in letters if stage == "enrichment"]
        deliver = [rid for rid, stage in letters if stage == "delivery"]
        if enrich:
            await work.reopen(conn, "outbox", enrich)
            await records.reset(conn, enrich)
        if deliver:
            await work.reopen(conn, "delivery", deliver)
    # After commit; whatever is not published here the sweeper publishes.
    await queue.enqueue_records(enrich)
    await queue.enqueue_deliveries(deliver)
    return len(letters)


async def discard(engine: AsyncEngine, filters: Filters) -> int:
    """Give up for good on each matching open letter."""
    async with engine.begin() as conn:
        letters = await dead_letters.resolve(conn, filters, "discarded")
        for record_id, stage in letters:
            if stage == "enrichment":
                await records.set_state(conn, record_id, "discarded")
    return len(letters)


__all__ = ["DeadLetterView", "Filters", "discard", "list_letters", "retry"]
