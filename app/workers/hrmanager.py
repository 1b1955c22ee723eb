"""HR Manager posts identifiers only: fetch what each event names, for all 20 event types.

The ids come from ``record.subjects``, derived at intake by the typed models of
app/schemas/hrmanager.py (where the [I] field names live); an event without the id its type
needs never gets here, it is quarantined at intake. [C] "After getting a hook, it's normal to
call our api" and "some of our hooks can send a lot of duplicates" (docs/ats/hrmanager.md):
every fetch goes through app/workers/fetch.py, so a burst of events about one candidate costs
one call.

Each type either fetches what the REST API offers for it (``Candidates/``, ``Positions/``,
``Users/``; docs/ats/hrmanager.md) or, for what the API does not serve (projects,
advertisements, layout templates, questionnaires), completes with the ids it names; deletions
become tombstones. None is a dead letter for being unmapped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from app.clients.base import Document
from app.clients.hrmanager import HRManagerClient
from app.intake.connections import ConnectionInfo
from app.schemas import hrmanager as events
from app.schemas import hrmanager_config
from app.schemas.hrmanager_config import HRManagerConfig
from app.services import Services
from app.store.normalized import Resource
from app.workers.context import Enrichment, EnrichmentError, RecordRow
from app.workers.fetch import Fetched, fetch
from app.workers.resources import first_value, from_fetched, parse_time, tombstone

Fetchable = Literal["candidate", "position", "user"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one event type becomes: the delivered type and what is fetched for it."""

    # The normalized type delivered to the tenant (docs/workers.md); unmapped ones are
    # ``hrmanager.<event>``.
    delivered: str
    # Fetched when the event names them, in this order.
    fetch: tuple[Fetchable, ...] = ()
    # The candidate is gone: stored as a tombstone, nothing fetched.
    deletes_candidate: bool = False


def _own(name: str) -> str:
    return f"hrmanager.{name}"


_CANDIDATE: tuple[Fetchable, ...] = ("candidate", "position")
PLANS: dict[str, Plan] = {
    events.POSITION_PUBLISHED: Plan("job.published", ("position",)),
    events.POSITION_UNPUBLISHED: Plan("job.unpublished", ("position",)),
    # [C] The REST API has no projects; [I] a position a project names is fetched, except when
    # the project is going away and the position may be too.
    events.PROJECT_CREATED: Plan(_own(events.PROJECT_CREATED), ("position",)),
    events.PROJECT_UPDATED: Plan(_own(events.PROJECT_UPDATED), ("position",)),
    events.PROJECT_DELETED: Plan(_own(events.PROJECT_DELETED)),
    events.PROJECT_DEACTIVATED: Plan(_own(events.PROJECT_DEACTIVATED)),
    events.SEND_CALENDAR_INVITE: Plan(_own(events.SEND_CALENDAR_INVITE), (*_CANDIDATE, "user")),
    events.CANDIDATE_REGISTERED: Plan("candidate.created", _CANDIDATE),
    events.CANDIDATE_UPDATED: Plan("candidate.updated", _CANDIDATE),
    events.CANDIDATE_STATUS_UPDATED: Plan("application.updated", _CANDIDATE),
    events.CANDIDATE_HIRED: Plan("candidate.hired", _CANDIDATE),
    events.CANDIDATE_DELETED: Plan("candidate.deleted", deletes_candidate=True),
    events.CANDIDATE_DELETED_BY_USER: Plan("candidate.deleted", deletes_candidate=True),
    events.CANDIDATE_DELETED_OWN: Plan("candidate.deleted", deletes_candidate=True),
    # [C] No advertisements in the REST API either; [I] the position an ad names is fetched.
    events.ADVERTISEMENT_UPDATED: Plan(_own(events.ADVERTISEMENT_UPDATED), ("position",)),
    events.ADVERTISEMENT_PUBLISHED: Plan(_own(events.ADVERTISEMENT_PUBLISHED), ("position",)),
    events.ADVERTISEMENT_UNPUBLISHED: Plan(_own(events.ADVERTISEMENT_UNPUBLISHED), ("position",)),
    events.LAYOUT_TEMPLATE_PUBLISHED: Plan(_own(events.LAYOUT_TEMPLATE_PUBLISHED)),
    events.LAYOUT_TEMPLATE_UNPUBLISHED: Plan(_own(events.LAYOUT_TEMPLATE_UNPUBLISHED)),
    events.QUESTIONNAIRE_UPDATED: Plan(_own(events.QUESTIONNAIRE_UPDATED)),
}
# Delivered event types, as other modules and the docs list them.
EVENT_TYPES = {name: plan.delivered for name, plan in PLANS.items()}
# [I] Modification-time and nested field names are not documented; the first present wins.
_UPDATED = ("LastUpdated", "LastModified", "Modified", "Updated", "UpdatedDate", "ChangedDate")


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


def config_of(connection: ConnectionInfo) -> HRManagerConfig:
    """The connection's typed configuration (parsed once per cached connection); one broken
    since it was loaded is the tenant's to fix, not something a retry can."""
    try:
        return connection.parsed(hrmanager_config.parse)
    except ValueError as exc:
        raise EnrichmentError("invalid_configuration", str(exc), kind="configuration") from exc


def derived_subjects(record: RecordRow, config: HRManagerConfig) -> dict[str, str]:
    """The ids of a record stored without them (not through the route, which derives them at
    intake), by the same parser and the connection's mapping."""
    if not isinstance(record.payload, dict):
        return {}
    parsed = events.parse(
        record.payload,
        url_event=record.event_type,
        fields=config.options.payload_fields,
        aliases=config.options.event_aliases,
    )
    return dict(parsed.subjects)


async def handle(services: Services, record: RecordRow) -> Enrichment:
    """Fetch what the event names and describe it as normalized resources."""
    connection = record.require_connection()
    config = config_of(connection)
    subjects = record.subjects or derived_subjects(record, config)
    missing = [f for f in events.required_ids(record.event_type) if f[:-3] not in subjects]
    if missing:
        # Intake quarantines such events; a record reaching here without them was made
        # some other way, and no retry can supply the id.
        raise EnrichmentError(
            "invalid_event",
            f"{record.event_type} names no {', '.join(missing)} "
            "(see options.payload_fields; app/schemas/hrmanager.py lists the names tried)",
        )
    plan = PLANS.get(record.event_type)
    # The ids are delivered with every event: for projects, advertisements and the like they
    # are all there is to tell.
    data: dict[str, Any] = {"subjects": dict(subjects)}
    if plan is None:
        # Not dispatched at intake; reached only if a record is released by hand.
        return Enrichment(_own(record.event_type), data=data)
    if plan.deletes_candidate:
        return Enrichment(plan.delivered, [tombstone("candidate", subjects["candidate"])], data)
    wanted = [kind for kind in plan.fetch if kind in subjects]
    if not wanted:
        return Enrichment(plan.delivered, data=data)
    client = HRManagerClient(services.http, services.budget, connection, config)

    async def get(kind: str, external_id: str, call: Callable[[], Awaitable[Document]]) -> Fetched:
        return await fetch(
            services,
            record,
            kind,
            external_id,
            call,
            budget_key=client.budget_key,
            coalesce=config.options.coalesce,
        )

    resources: list[Resource] = []
    for kind in wanted:
        external_id = subjects[kind]
        if kind == "candidate":
            fetched = await get("candidate", external_id, partial(client.candidate, external_id))
            resources += candidate(fetched, external_id)
        elif kind == "position":
            fetched = await get("job", external_id, partial(client.position, external_id))
            resources.append(position(fetched, external_id))
        else:
            # No normalized table for users: the recruiter goes with the delivered event.
            fetched = await get("user", external_id, partial(client.user, external_id))
            data["user"] = fetched.document
    return Enrichment(plan.delivered, resources, data)
