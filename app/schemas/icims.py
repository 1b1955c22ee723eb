"""iCIMS Integration Events (docs/ats/icims.md): one model per ``eventType``.

iCIMS adds fields without notice and asks partners not to validate strictly, so unknown keys
are ignored here (the raw payload is stored whole). Ids are JSON strings; numbers are accepted
and kept as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, field_validator
from pydantic.alias_generators import to_camel

from app.schemas.keys import digest

SOURCE = "icims"

APPLICATION_COMPLETE = "AssessmentEvent"
STATUS_FLOW_UPDATE = "WorkFlowStatusChangeEvent"
JOB_POSTING = "JobPostToWebEvent"
# [I] docs/ats/icims.md: the Job Edit table row says JobPostToWebEvent while its example
# shows ViewJobWebPostEvent; the example is used, and ``type_aliases`` can map another name.
JOB_EDIT = "ViewJobWebPostEvent"
JOB_UNPOSTING = "JobUnpostToWebEvent"
ONBOARD_PORTAL_TASK = "OnboardPortalTaskEvent"


class Actor(StrEnum):
    """Who pressed the button that sent the event, and so who reads our error message."""

    CANDIDATE = "candidate"
    NEW_HIRE = "new_hire"
    RECRUITER = "recruiter"


ACTORS: dict[str, Actor] = {
    APPLICATION_COMPLETE: Actor.CANDIDATE,
    ONBOARD_PORTAL_TASK: Actor.NEW_HIRE,
    STATUS_FLOW_UPDATE: Actor.RECRUITER,
    JOB_POSTING: Actor.RECRUITER,
    JOB_EDIT: Actor.RECRUITER,
    JOB_UNPOSTING: Actor.RECRUITER,
}

# Events answered with 303 and a link in ``Location``; the others get 200.
LINK_EVENTS = frozenset({APPLICATION_COMPLETE, JOB_POSTING, JOB_EDIT, ONBOARD_PORTAL_TASK})
EVENT_TYPES = frozenset(ACTORS)
# Their ids name one action for good (a candidate completes one recruiting workflow's
# application, a new hire opens one task): a repeat is a duplicate forever, without a thread.
ONCE_EVENTS = frozenset({APPLICATION_COMPLETE, ONBOARD_PORTAL_TASK})

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        coerce_numbers_to_str=True,
    )


class Link(_Model):
    """One entry of the ``links`` array or the ``Link`` header: a GET URL for a related entity."""

    rel: str | None = None
    title: str | None = None
    url: str


class _Event(_Model):
    customer_id: Id
    user_id: Id
    system_id: Id
    links: list[Link] = Field(default_factory=list)

    @field_validator("links", mode="before")
    @classmethod
    def _usable_links(cls, value: Any) -> Any:
        # A malformed link is no reason to refuse a candidate's application: keep the good ones.
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, dict) and isinstance(v.get("url"), str)]


class AssessmentEvent(_Event):
    """Application Complete: a candidate finished applying; answer 303 to the assessment."""

    event_type: Literal["AssessmentEvent"]
    # user_id is the candidate, system_id the recruiting workflow.
    return_url: Url


class WorkFlowStatusChangeEvent(_Event):
    """Status Flow Update: a recruiter moved a candidate to a trigger status; answer 200."""

    event_type: Literal["WorkFlowStatusChangeEvent"]
    # user_id is the recruiter, system_id the workflow.
    person_id: Id
    job_id: Id
    new_status: Id
    old_status: Id | None = None


class JobPostToWebEvent(_Event):
    """Job Posting: a user posted a job; answer 303 to the posting."""

    event_type: Literal["JobPostToWebEvent"]
    # system_id is the job.
    portal_url: Url | None = None


class ViewJobWebPostEvent(_Event):
    """Job Edit: a user modified an externally posted job (each edit is updated job
    information); answer 303 to the editor."""

    event_type: Literal["ViewJobWebPostEvent"]


class JobUnpostToWebEvent(_Event):
    """Job Unposting: a user took a job off the partner's board; answer 200."""

    event_type: Literal["JobUnpostToWebEvent"]


class OnboardPortalTaskEvent(_Event):
    """Onboard Portal Task: a new hire opened a partner task; answer 303 to the task."""

    event_type: Literal["OnboardPortalTaskEvent"]
    # user_id and system_id are both the new hire.
    return_url: Url
    incomplete_url: Url | None = None


IcimsEvent = (
    AssessmentEvent
    | WorkFlowStatusChangeEvent
    | JobPostToWebEvent
    | ViewJobWebPostEvent
    | JobUnpostToWebEvent
    | OnboardPortalTaskEvent
)
event_adapter: TypeAdapter[IcimsEvent] = TypeAdapter(
    Annotated[IcimsEvent, Field(discriminator="event_type")]
)


def parse_event(payload: dict[str, Any]) -> IcimsEvent:
    """The typed event; raises ``pydantic.ValidationError`` when a documented field is wrong."""
    return event_adapter.validate_python(payload)


def parse_link_header(value: str | None) -> list[Link]:
    """The ``Link`` request header as iCIMS writes it.

    iCIMS's example omits RFC 8288's angle brackets and ends with a comma
    (``http://.../jobs/1209;rel="job";title="Job Profile",``); both forms are read.
    Linear in the header's length: a regex over the parameters backtracked quadratically on a
    long run of letters or spaces, seconds of CPU for one header within the size limit.
    """
    if not value:
        return []
    links: list[Link] = []
    for part in _split_unquoted(value, ","):
        url, _, params = part.partition(";")
        url = url.strip().removeprefix("<").removesuffix(">").strip()
        if not url:
            continue
        attrs: dict[str, str] = {}
        for param in _split_unquoted(params, ";"):
            name, sep, raw = param.partition("=")
            words = name.split()
            if not sep or not words or not (words[-1].isascii() and words[-1].isalpha()):
                continue
            raw = raw.strip()
            close = raw.find('"', 1) if raw.startswith('"') else -1
            attrs[words[-1].lower()] = raw[1:close] if close > 0 else raw.split(",", 1)[0].strip()
        links.append(Link(url=url, rel=attrs.get("rel"), title=attrs.get("title")))
    return links


def _split_unquoted(value: str, separator: str) -> list[str]:
    # Separators inside quoted titles must not split an entry.
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def dedupe_content(event: IcimsEvent) -> str:
    """What makes two deliveries the same action: the documented ids of its event type.

    iCIMS sends no event id (docs/ats/icims.md); the ids in the payload identify the action.
    """
    parts: list[str | None] = [event.event_type, event.customer_id, event.system_id]
    if isinstance(event, AssessmentEvent):
        parts.append(event.user_id)
    elif isinstance(event, WorkFlowStatusChangeEvent):
        parts += [event.person_id, event.job_id, event.old_status, event.new_status]
    elif isinstance(event, OnboardPortalTaskEvent):
        # Several portal tasks may point at one new hire; the task's return URL tells them apart.
        parts.append(event.return_url)
    elif isinstance(event, ViewJobWebPostEvent):
        # Another user's edit is another edit; the user who posts or unposts a job is not part
        # of the action (a second user posting a posted job changes nothing).
        parts.append(event.user_id)
    return digest(*parts)


def thread(event: IcimsEvent) -> str | None:
    """The thing whose events follow each other: a workflow's status flow, a job's postings
    and unpostings, a job's edits; None for :data:`ONCE_EVENTS`.

    A repeat is the same delivery again only while it is the newest event of its thread: a
    status flow A->B, B->A, A->B records three events, and so does post, unpost, post.
    """
    if event.event_type in ONCE_EVENTS:
        return None
    if isinstance(event, JobPostToWebEvent | JobUnpostToWebEvent):
        # One thread per job for both types, under the name Job Posting's thread always had.
        return digest(JOB_POSTING, event.customer_id, event.system_id)
    return digest(event.event_type, event.customer_id, event.system_id)


def earlier_threads(event: IcimsEvent) -> tuple[str, ...]:
    """Threads that also hold this event's predecessors: Job Unposting records stored while
    unpostings had a thread of their own (until retention drops them)."""
    if isinstance(event, JobPostToWebEvent | JobUnpostToWebEvent):
        return (digest(JOB_UNPOSTING, event.customer_id, event.system_id),)
    return ()


def linked_id(links: Iterable[Link], rel: str, collection: str) -> str | None:
    """The id in the first link of relation ``rel`` whose URL ends ``/{collection}/{id}``."""
    for link in links:
        if (link.rel or "").lower() != rel.lower():
            continue
        segments = [s for s in urlsplit(link.url).path.split("/") if s]
        if len(segments) >= 2 and segments[-2] == collection:
            found = unquote(segments[-1]).strip()
            if 0 < len(found) <= 128:
                return found
    return None


def subjects(event: IcimsEvent, header_links: Sequence[Link] = ()) -> dict[str, str]:
    """The person, job and workflow the event names (docs/ats/icims.md, event table);
    ``header_links`` are the request's ``Link`` header entries."""
    if isinstance(event, WorkFlowStatusChangeEvent):
        return {"person": event.person_id, "job": event.job_id, "application": event.system_id}
    if isinstance(event, AssessmentEvent):
        # userId is the candidate here; the job is read from the workflow.
        return {"person": event.user_id, "application": event.system_id}
    if isinstance(event, OnboardPortalTaskEvent):
        # The new hire: systemId (userId names the same person).
        named = {"person": event.system_id or event.user_id}
        # [I] The event "sends Person and Job data" (docs/ats/icims.md) but has no job field: the
        # job is
        # read from a rel="job" link (.../jobs/{id}), of the links array or else the Link
        # header, the way Job events and Status Flow Update name theirs. A task without one
        # is recorded with its new hire only.
        job = linked_id([*event.links, *header_links], "job", "jobs")
        if job is not None:
            named["job"] = job
        return named
    return {"job": event.system_id}
