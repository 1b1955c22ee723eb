"""KeldairHR records carry the whole resource, so there is nothing to fetch: the record is
marked processed and, where the tenant has a destination, delivered as a normalized event."""

from __future__ import annotations

from app.schemas.keldair import APPLICANT_HIRED
from app.services import Services
from app.workers.context import Enrichment, RecordRow

EVENT_TYPES = {APPLICANT_HIRED: "candidate.hired"}


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """The event as delivered: its own ``data`` under ``source_data``."""
    del services
    payload = record.payload if isinstance(record.payload, dict) else {}
    return Enrichment(
        EVENT_TYPES.get(record.event_type, f"keldair.{record.event_type}"),
        data={"source_data": payload.get("data")},
    )
