"""``hmac`` records: no ATS API is called (enrichment "none"); each is delivered as the generic
event, its name and the object as the sender sent it."""

from __future__ import annotations

from app.schemas.hmac import GenericEvent
from app.services import Services
from app.workers.context import Enrichment, RecordRow


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """The generic event of ``record``, with nothing fetched."""
    del services
    event = GenericEvent(event=record.event_type, object=record.payload)
    return Enrichment(event_type=record.event_type, data=event.model_dump())
