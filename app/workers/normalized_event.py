"""The normalized event a processed record owes its tenant's destination: built from the stored
(newest) state of what the record names, and the delivery row that carries it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.normalized import Resource, stored_view
from app.workers.context import Enrichment, RecordRow

# The stored views a transaction already knows, by (tenant id, source, kind, external id).
ViewKey = tuple[int, str, str, str]
Views = dict[ViewKey, dict[str, Any]]


def view_key(record: RecordRow, resource: Resource) -> ViewKey:
    """The key of ``resource``'s stored view in :data:`Views`: one normalized row per tenant,
    source, kind and external id."""
    return (record.tenant_id, record.source, resource.kind, resource.external_id)


async def build_event(
    conn: AsyncConnection,
    record: RecordRow,
    enrichment: Enrichment,
    tenant_slug: str,
    known: Views | None = None,
) -> dict[str, Any]:
    """The normalized event for a record, from the stored (newest) state of what it names;
    ``known`` holds views of rows this transaction wrote (and still locks), read only once."""
    views: dict[str, list[dict[str, Any]]] = {"candidate": [], "job": [], "application": []}
    seen: set[tuple[str, str]] = set()
    for resource in enrichment.resources:
        if (resource.kind, resource.external_id) in seen:
            continue
        seen.add((resource.kind, resource.external_id))
        view = (known or {}).get(view_key(record, resource))
        if view is None:
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


def delivery_row(record: RecordRow, event: dict[str, Any]) -> tuple[uuid.UUID, int, str, bytes]:
    """The delivery row owing ``event`` (:func:`app.store.work.finish_processed`)."""
    return (record.id, record.tenant_id, event["type"], orjson.dumps(event))
