"""HR Manager posts identifiers only: fetch the candidate and position they name.

[I] The webhook body's field names are not published (ATS-FACTS section 2, "Gaps"). The names
below are guesses in the style of the REST API; a connection can list its own under
``options.payload_fields`` (e.g. ``{"candidate_id": ["CandidateGuid"]}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.clients.hrmanager import HRManagerClient
from app.services import Services
from app.store.normalized import Resource
from app.workers.context import Enrichment, EnrichmentError, RecordRow
from app.workers.fetch import Fetched, fetch
from app.workers.resources import first_value, from_fetched, parse_time, tombstone

DEFAULT_PAYLOAD_FIELDS: dict[str, list[str]] = {
    "candidate_id": ["CandidateId", "candidateId", "candidate_id", "CandidateID"],
    "position_id": ["PositionId", "positionId", "position_id", "PositionID"],
}
EVENT_TYPES = {
    "CandidateRegistered": "candidate.created",
    "CandidateUpdated": "candidate.updated",
    "CandidateStatusUpdated": "application.updated",
    "CandidateHired": "candidate.hired",
    "CandidateDeleted": "candidate.deleted",
    "CandidateDeletedByUser": "candidate.deleted",
    "CandidateDeletedOwn": "candidate.deleted",
    "PositionPublished": "job.published",
    "PositionUnpublished": "job.unpublished",
}
_DELETIONS = frozenset({"CandidateDeleted", "CandidateDeletedByUser", "CandidateDeletedOwn"})
# [I] Modification-time and nested field names are not documented; the first present wins.
_UPDATED = ("LastUpdated", "LastModified", "Modified", "Updated", "UpdatedDate", "ChangedDate")


def payload_ids(record: RecordRow) -> dict[str, str | None]:
    """The candidate and position ids the event names, by the connection's field names."""
    options = record.connection.options if record.connection else {}
    names: dict[str, Any] = {**DEFAULT_PAYLOAD_FIELDS, **(options.get("payload_fields") or {})}
    return {key: first_value(record.payload, names.get(key, [])) for key in DEFAULT_PAYLOAD_FIELDS}


def _updated_at(document: Mapping[str, Any]) -> Any:
    return parse_time(next((document[k] for k in _UPDATED if document.get(k)), None))


def candidate(fetched: Fetched, candidate_id: str) -> list[Resource]:
    """The candidate and one application per entry of its PositionList."""
    document: Mapping[str, Any] = fetched.document
    resources = [
        from_fetched(
            "candidate",
            candidate_id,
            fetched,
            {
                "first_name": document.get("FirstName"),
                "last_name": document.get("LastName"),
                "email": document.get("Email"),
            },
            source_updated_at=_updated_at(document),
        )
    ]
    for item in document.get("PositionList") or []:
        position_id = first_value(item, ("PositionId", "Id", "PositionID"))
        if position_id is None:
            continue
        resources.append(
            from_fetched(
                "application",
                f"{candidate_id}:{position_id}",
                fetched,
                {
                    "candidate_external_id": candidate_id,
                    "job_external_id": position_id,
                    "status": first_value(item, ("Status", "StatusName", "CandidateStatus")),
                },
                document=item,
            )
        )
    return resources


def position(fetched: Fetched, position_id: str) -> Resource:
    """The position as a normalized job."""
    document: Mapping[str, Any] = fetched.document
    return from_fetched(
        "job",
        position_id,
        fetched,
        {
            "title": first_value(document, ("Name", "Title", "PositionName")),
            "status": first_value(document, ("Status", "State")),
            "location": first_value(document, ("Location", "WorkPlace", "City")),
        },
        source_updated_at=_updated_at(document),
    )


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """Fetch what the event names and describe it as normalized resources."""
    connection = record.require_connection()
    ids = payload_ids(record)
    candidate_id, position_id = ids["candidate_id"], ids["position_id"]
    event_type = EVENT_TYPES.get(record.event_type, f"hrmanager.{record.event_type}")
    if record.event_type in _DELETIONS:
        if candidate_id is None:
            raise EnrichmentError("invalid_event", "a candidate deletion without a candidate id")
        return Enrichment(event_type, [tombstone("candidate", candidate_id)])
    if record.event_type.startswith("Position"):
        candidate_id = None
    if candidate_id is None and position_id is None:
        raise EnrichmentError(
            "invalid_event",
            "the event names no candidate or position id "
            f"(looked for {ids.keys()} under options.payload_fields or the defaults)",
        )
    client = HRManagerClient(services.http, services.budget, connection)
    resources: list[Resource] = []
    if candidate_id is not None:
        cid = candidate_id
        fetched = await fetch(services, record, "candidate", cid, lambda: client.candidate(cid))
        resources += candidate(fetched, cid)
    if position_id is not None:
        pid = position_id
        fetched = await fetch(services, record, "job", pid, lambda: client.position(pid))
        resources.append(position(fetched, pid))
    return Enrichment(event_type, resources)
