"""iCIMS events name people, jobs and workflows by id: fetch them and normalize them.

What validation fetched inside the request (app/routers/icims/checks.py) is the very cache
entry asked for here, so a validated event usually costs no further API call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from app.clients.icims import IcimsClient
from app.schemas.icims import (
    APPLICATION_COMPLETE,
    JOB_EDIT,
    JOB_POSTING,
    JOB_UNPOSTING,
    ONBOARD_PORTAL_TASK,
    STATUS_FLOW_UPDATE,
    Link,
    parse_event,
    subjects,
)
from app.schemas.icims_config import (
    WORKFLOW_JOB_FIELD,
    WORKFLOW_PERSON_FIELD,
    ConfigError,
    IcimsConfig,
    ProfileKind,
)
from app.services import Services
from app.store.normalized import Resource
from app.workers.context import Enrichment, EnrichmentError, RecordRow
from app.workers.fetch import Fetched, fetch
from app.workers.resources import first_value, from_fetched

EVENT_TYPES = {
    APPLICATION_COMPLETE: "application.completed",
    STATUS_FLOW_UPDATE: "application.status_changed",
    JOB_POSTING: "job.posted",
    # Each edit is updated job information (docs/ats/icims.md): the job as it is now, like a
    # posting.
    JOB_EDIT: "job.updated",
    JOB_UNPOSTING: "job.unposted",
    ONBOARD_PORTAL_TASK: "onboarding.task_opened",
}


def _text(value: Any) -> str | None:
    """iCIMS writes list fields as ``{"id", "value"}`` (or a list of them), plain ones bare."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, Mapping):
        value = value.get("value", value.get("id"))
    return None if value is None or value == "" else str(value)


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return None if value is None or value == "" else str(value)


def person(fetched: Fetched, person_id: str) -> Resource:
    """A person as a normalized candidate."""
    document: Mapping[str, Any] = fetched.document
    return from_fetched(
        "candidate",
        person_id,
        fetched,
        {
            "first_name": _text(document.get("firstname")),
            "last_name": _text(document.get("lastname")),
            "email": _text(document.get("email")),
        },
    )


def job(fetched: Fetched, job_id: str) -> Resource:
    """A job profile, normalized."""
    document: Mapping[str, Any] = fetched.document
    return from_fetched(
        "job",
        job_id,
        fetched,
        {
            "title": _text(document.get("jobtitle")),
            "status": _text(document.get("folder")),
            "location": _text(document.get("joblocation")),
        },
    )


def workflow(
    fetched: Fetched, workflow_id: str, *, person_id: str | None, job_id: str | None
) -> Resource:
    """A recruiting workflow as a normalized application."""
    document: Mapping[str, Any] = fetched.document
    return from_fetched(
        "application",
        workflow_id,
        fetched,
        {
            "candidate_external_id": _id(document.get(WORKFLOW_PERSON_FIELD)) or person_id,
            "job_external_id": _id(document.get(WORKFLOW_JOB_FIELD)) or job_id,
            "status": _text(document.get("status")),
        },
    )


def _ids(record: RecordRow) -> dict[ProfileKind, str | None]:
    """Which person, job and workflow the event names: the subjects the typed event gave at
    intake (app/schemas/icims.py), read again from the payload only for records stored before
    subjects were kept."""
    named = record.subjects
    if not named:
        try:
            event = parse_event({**record.payload, "eventType": record.event_type})
            stored = record.payload.get("_hirehook", {}).get("linkHeader", [])
            named = subjects(event, [Link.model_validate(link) for link in stored])
        except (ValidationError, TypeError, AttributeError):
            named = {}
    return {
        "people": named.get("person"),
        "jobs": named.get("job"),
        "applicantworkflows": named.get("application"),
    }


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """Fetch the profiles the event names and describe them as normalized resources."""
    connection = record.require_connection()
    event_type = EVENT_TYPES.get(record.event_type, f"icims.{record.event_type}")
    data = {"source_data": record.payload}
    try:
        config = connection.parsed(IcimsConfig.parse)
    except ConfigError as exc:
        raise EnrichmentError("invalid_configuration", str(exc), kind="configuration") from exc
    if config.options.api is None or config.secrets.api_client_secret is None:
        # Without API credentials the event is delivered as received, with nothing fetched.
        return Enrichment(event_type, data=data)
    client = IcimsClient.for_connection(
        services.http, services.budget, services.cache, connection, config=config
    )
    customer = first_value(record.payload, ("customerId",)) or connection.account or ""
    fields = config.fields_for(record.event_type)
    ids = _ids(record)

    async def get(kind: ProfileKind, profile_id: str) -> Fetched:
        names = fields[kind]
        return await fetch(
            services,
            record,
            kind,
            client.cache_ref(customer, profile_id, names),
            lambda: client.fetch_profile(customer, kind, profile_id, fields=names, store=False),
            # The profile GET spends one call of the budget (the token call spends none, and a
            # retry after a revoked token asks the budget itself): its grant comes with the
            # cache probe and goes back with the store, two Redis round trips per profile.
            budget_key=client.budget_key,
        )

    resources: list[Resource] = []
    person_id, job_id, workflow_id = ids["people"], ids["jobs"], ids["applicantworkflows"]
    if workflow_id is not None:
        fetched = await get("applicantworkflows", workflow_id)
        # The workflow says which person and job it links, when the event did not.
        person_id = person_id or _id(fetched.document.get(WORKFLOW_PERSON_FIELD))
        job_id = job_id or _id(fetched.document.get(WORKFLOW_JOB_FIELD))
        resources.append(workflow(fetched, workflow_id, person_id=person_id, job_id=job_id))
    if person_id is not None:
        resources.append(person(await get("people", person_id), person_id))
    if job_id is not None:
        resources.append(job(await get("jobs", job_id), job_id))
    return Enrichment(event_type, resources, data=data)
