"""iCIMS records: the enrichment pipeline (fetching people, jobs and workflows) builds on this.

What the router fetched to validate an event is already in the document cache for it.
"""

from __future__ import annotations

from app.services import Services
from app.workers.context import Effects, RecordRow


async def handle(services: Services, record: RecordRow) -> Effects | None:
    """Nothing beyond marking the record processed, for now."""
    del services, record
    return None
