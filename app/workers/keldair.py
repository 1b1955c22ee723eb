"""KeldairHR records carry the whole resource, so there is nothing to fetch yet."""

from __future__ import annotations

from app.services import Services
from app.workers.context import Effects, RecordRow


async def handle(services: Services, record: RecordRow) -> Effects | None:
    """Nothing beyond marking the record processed."""
    del services, record
    return None
