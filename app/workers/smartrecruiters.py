"""SmartRecruiters notifications carry ids only (``{"id": ...}``, or ``{"job_id": ...,
"candidate_id": ...}`` for applications) and the event's name in the ``event-name`` header:
fetch the candidate and job they name. The router derives those ids at intake (the record's
``subjects``: ``person``, ``job``, ``application``); older records are read from the payload.

An application is read from the candidate's ``primaryAssignment`` / ``secondaryAssignments``
[C], so an application event costs the same (cached, coalesced) candidate call as any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.admin.privacy import erase
from app.clients.smartrecruiters import CANDIDATES_ROUTE, SmartRecruitersClient
from app.schemas import smartrecruiters_config as sr_config
from app.services import Services
from app.store.normalized import Resource
from app.workers.context import Enrichment, EnrichmentError, RecordRow
from app.workers.fetch import Fetched, fetch
from app.workers.resources import first_value, from_fetched, parse_time, tombstone

EVENT_TYPES = {
    "candidate.created": "candidate.created",
    "candidate.updated": "candidate.updated",
    "candidate.deleted": "candidate.deleted",
    "application.created": "application.created",
    "job.created": "job.created",
}
# [I] camelCase variants are accepted too; the documented example is snake_case.
_CANDIDATE_ID = ("candidate_id", "candidateId")
_JOB_ID = ("job_id", "jobId")


def normalized_type(name: str) -> str:
    """The delivered event type for a SmartRecruiters event name."""
    if name in EVENT_TYPES:
        return EVENT_TYPES[name]
    for prefix in ("application", "job", "candidate"):
        if name.startswith(prefix + "."):
            return f"{prefix}.updated"
    return f"smartrecruiters.{name}"


def _assignments(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    primary = document.get("primaryAssignment")
    found = [primary] if isinstance(primary, Mapping) else []
    found += [a for a in document.get("secondaryAssignments") or [] if isinstance(a, Mapping)]
    return found


def candidate(fetched: Fetched, candidate_id: str, only_job: str | None = None) -> list[Resource]:
    """The candidate and its applications (only to ``only_job`` when given)."""
    document: Mapping[str, Any] = fetched.document
    resources = [
        from_fetched(
            "candidate",
            candidate_id,
            fetched,
            {
                "first_name": document.get("firstName"),
                "last_name": document.get("lastName"),
                "email": document.get("email"),
            },
            source_updated_at=parse_time(document.get("updatedOn")),
        )
    ]
    for assignment in _assignments(document):
        job_id = first_value(assignment.get("job"), ("id",))
        if job_id is None or (only_job is not None and job_id != only_job):
            continue
        status = assignment.get("status")
        resources.append(
            from_fetched(
                "application",
                f"{candidate_id}:{job_id}",
                fetched,
                {
                    "candidate_external_id": candidate_id,
                    "job_external_id": job_id,
                    "status": status if isinstance(status, str) else None,
                },
                document=assignment,
            )
        )
    return resources


def job(fetched: Fetched, job_id: str) -> Resource:
    """The job, normalized."""
    document: Mapping[str, Any] = fetched.document
    location = document.get("location")
    place = None
    if isinstance(location, Mapping):
        place = ", ".join(str(location[k]) for k in ("city", "country") if location.get(k)) or None
    return from_fetched(
        "job",
        job_id,
        fetched,
        {"title": document.get("title"), "status": document.get("status"), "location": place},
        source_updated_at=parse_time(document.get("updatedOn")),
    )


def payload_ids(name: str, payload: Any) -> tuple[str | None, str | None]:
    """(candidate id, job id) read from a raw payload: records stored before subjects were
    derived at intake (app/schemas/smartrecruiters.py) have only this."""
    candidate_id = first_value(payload, _CANDIDATE_ID)
    job_id = first_value(payload, _JOB_ID)
    plain_id = first_value(payload, ("id",))
    if name.startswith("candidate."):
        candidate_id = candidate_id or plain_id
    elif name.startswith("job."):
        job_id = job_id or plain_id
    return candidate_id, job_id


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """Fetch what the notification names and describe it as normalized resources."""
    connection = record.require_connection()
    try:
        config = connection.parsed(sr_config.parse)
    except ValueError as exc:
        raise EnrichmentError("invalid_configuration", str(exc), kind="configuration") from exc
    name = record.event_type or record.headers.get("event-name", "")
    if record.subjects:
        # Derived once, from the typed event, when it was received.
        candidate_id = record.subjects.get("person")
        job_id = record.subjects.get("job")
    else:
        candidate_id, job_id = payload_ids(name, record.payload)
    event_type = normalized_type(name)
    if name == "candidate.deleted":
        if candidate_id is None:
            raise EnrichmentError("invalid_event", "candidate.deleted without an id")
        if config.options.erase_on_delete:
            # The ATS forgot the candidate: so do we, this event's own record included. The
            # tombstone that follows names the id only; the destination is told of the deletion.
            await erase(
                services.engine,
                services.queue.redis,
                tenant=connection.tenant_slug,
                source=record.source,
                candidate_id=candidate_id,
                actor="smartrecruiters:candidate.deleted",
            )
        return Enrichment(event_type, [tombstone("candidate", candidate_id)])
    if candidate_id is None and job_id is None:
        raise EnrichmentError("invalid_event", f"{name or 'the event'} names no candidate or job")
    client = SmartRecruitersClient(services.http, services.budget, connection, config)
    coalesce = config.options.coalesce
    resources: list[Resource] = []
    if candidate_id is not None:
        cid = candidate_id
        fetched = await fetch(
            services,
            record,
            "candidate",
            cid,
            lambda: client.candidate(cid),
            # The call's own budgets (the source's and its route's) are taken with the cache
            # probe and given back with the store: two Redis round trips per document.
            budget_key=client.key_for(CANDIDATES_ROUTE),
            coalesce=coalesce,
        )
        # An application event is about one application; a candidate event about all of them.
        resources += candidate(fetched, cid, only_job=job_id)
    if job_id is not None:
        jid = job_id
        fetched = await fetch(
            services,
            record,
            "job",
            jid,
            lambda: client.job(jid),
            budget_key=client.budget_key,
            coalesce=coalesce,
        )
        resources.append(job(fetched, jid))
    return Enrichment(event_type, resources)
