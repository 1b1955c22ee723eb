"""SmartRecruiters webhook notifications: the event's name is a header, the body holds ids.

[C] docs/ats/smartrecruiters.md: headers ``event-name`` (``application.created``), ``event-version``
(``v201910``), ``event-id`` and ``link`` (``<url>; rel=self``, the resource's current state);
the body names the resource, ``{"id": ...}``, or for an application
``{"job_id": ..., "candidate_id": ...}``.

[I] The camelCase spellings (``jobId``, ``candidateId``) are accepted too, and numeric ids are
read as strings. [I] Only ``application.created`` is a documented event name; the other names
below follow the same ``<resource>.<change>`` pattern (and the enrichment handler in
app/workers/smartrecruiters.py). Any other name is recorded with ``known = false`` and never
dispatched, so a new SmartRecruiters event is stored, not lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.intake.validation import describe
from app.schemas.keys import digest
from app.schemas.parsed import Parsed

SOURCE = "smartrecruiters"

CANDIDATE_EVENTS = frozenset({"candidate.created", "candidate.updated", "candidate.deleted"})
JOB_EVENTS = frozenset({"job.created", "job.updated", "job.status.updated"})
APPLICATION_EVENTS = frozenset({"application.created", "application.status.updated"})
KNOWN_EVENTS = CANDIDATE_EVENTS | JOB_EVENTS | APPLICATION_EVENTS
MAX_KEY_CHARS = 255


def _text_id(value: Any) -> Any:
    # Ids are strings in every documented example; a number is read as its digits.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


class _Body(BaseModel):
    # SmartRecruiters may add fields; they are kept in the stored payload, not refused.
    model_config = ConfigDict(extra="allow")


class ResourceBody(_Body):
    """``{"id": ...}``: a candidate or a job."""

    id: str = Field(min_length=1, max_length=MAX_KEY_CHARS)

    @field_validator("id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _text_id(value)


class ApplicationBody(_Body):
    """``{"job_id": ..., "candidate_id": ...}``: one candidate's application to one job."""

    job_id: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    candidate_id: str = Field(min_length=1, max_length=MAX_KEY_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _camel_case(cls, data: Any) -> Any:
        # [I] jobId / candidateId, where the documented snake_case names are absent.
        if isinstance(data, dict):
            for ours, theirs in (("job_id", "jobId"), ("candidate_id", "candidateId")):
                if ours not in data and theirs in data:
                    data = {**data, ours: data[theirs]}
        return data

    @field_validator("job_id", "candidate_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _text_id(value)


def dedupe_key(headers: Mapping[str, str], body: bytes) -> str:
    """[C] ``event-id`` names one event and is resent unchanged with every retry. Without it
    (never seen), the content that identifies the event: name, version, link and body, but not
    the timestamp, which differs on each attempt."""
    event_id = headers.get("event-id", "").strip()
    if 0 < len(event_id) <= MAX_KEY_CHARS:
        return event_id
    return "sha256:" + digest(
        headers.get("event-name"),
        headers.get("event-version"),
        headers.get("link"),
        body.decode("utf-8", "replace"),
    )


def subjects(event_name: str, body: ResourceBody | ApplicationBody) -> dict[str, str]:
    """The candidate (``person``), job and application an event names."""
    if isinstance(body, ApplicationBody):
        return {
            "person": body.candidate_id,
            "job": body.job_id,
            # The normalized application's external id (app/workers/smartrecruiters.py).
            "application": f"{body.candidate_id}:{body.job_id}",
        }
    return {"person" if event_name in CANDIDATE_EVENTS else "job": body.id}


def parse(payload: Any, event_name: str) -> Parsed:
    """The event's name and the ids it names; problems instead for a body that does not fit."""
    name = event_name.strip()
    if not name:
        return Parsed("unknown", known=False, problems=("the event-name header is missing",))
    name = name[:MAX_KEY_CHARS]
    if name not in KNOWN_EVENTS:
        return Parsed(name, known=False)
    if not isinstance(payload, dict):
        return Parsed(name, known=True, problems=("the body is not a JSON object",))
    model = ApplicationBody if name in APPLICATION_EVENTS else ResourceBody
    try:
        body = model.model_validate(payload)
    except ValidationError as exc:
        return Parsed(name, known=True, problems=(describe(exc),))
    return Parsed(name, known=True, subjects=subjects(name, body))
