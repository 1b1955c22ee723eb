"""KeldairHR events (docs/ats/keldairhr.md): ``{id, type, version, dateOccurred, data}``.

Its guide names two events, "an applicant gets hired" and "an onboarding file gets completed",
but not their ``type`` strings nor the shape of ``data``; both are assumptions here
(docs/ats/keldairhr.md: KeldairHR publishes none). A connection can map the sender's own type
strings
onto these with the ``type_aliases`` option, and any other type is stored, not rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from app.intake.validation import describe
from app.schemas.parsed import Parsed

SOURCE = "keldair"

APPLICANT_HIRED = "applicant.hired"
ONBOARDING_FILE_COMPLETED = "onboarding_file.completed"


class _Model(BaseModel):
    # Senders add fields without notice; keep them rather than fail.
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)


class Applicant(_Model):
    """The hired applicant, as nested under ``data`` (assumed shape)."""

    id: str = Field(min_length=1)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    job_id: str | None = None
    hired_at: datetime | None = None


class OnboardingFile(_Model):
    """The completed onboarding file (assumed shape)."""

    id: str = Field(min_length=1)
    applicant_id: str | None = None
    completed_at: datetime | None = None


class _Envelope(_Model):
    id: str = Field(min_length=1, max_length=255)
    version: str | None = None
    date_occurred: datetime | None = None


class ApplicantHired(_Envelope):
    """An applicant was hired."""

    type: Literal["applicant.hired"]
    data: Applicant


class OnboardingFileCompleted(_Envelope):
    """An onboarding file was completed."""

    type: Literal["onboarding_file.completed"]
    data: OnboardingFile


class UnknownEvent(_Envelope):
    """A type this version does not model: stored with its payload, not dispatched."""

    type: str = Field(min_length=1, max_length=255)
    data: Any = None


KnownEvent = Annotated[ApplicantHired | OnboardingFileCompleted, Field(discriminator="type")]
KNOWN_TYPES = frozenset({APPLICANT_HIRED, ONBOARDING_FILE_COMPLETED})
known_event_adapter: TypeAdapter[ApplicantHired | OnboardingFileCompleted] = TypeAdapter(KnownEvent)


def parse_event(
    payload: dict[str, Any], aliases: dict[str, str] | None = None
) -> ApplicantHired | OnboardingFileCompleted | UnknownEvent:
    """The typed event for ``payload``; raises ``pydantic.ValidationError`` when malformed."""
    event_type = payload.get("type")
    if isinstance(event_type, str) and aliases and event_type in aliases:
        payload = {**payload, "type": aliases[event_type]}
        event_type = payload["type"]
    # A list or object under "type" is unhashable: testing it against the set raised TypeError.
    if isinstance(event_type, str) and event_type in KNOWN_TYPES:
        return known_event_adapter.validate_python(payload)
    return UnknownEvent.model_validate(payload)


def dedupe_key(payload: dict[str, Any], headers: Mapping[str, str]) -> str:
    """Standard Webhooks senders give every event an id and resend it unchanged: the payload's
    ``id``, or the ``webhook-id`` header (the same id) when the payload's is unusable."""
    value = payload.get("id")
    if isinstance(value, str) and 0 < len(value) <= 255:
        return value
    return f"webhook-id:{headers.get('webhook-id', '')}"


def parse(
    payload: dict[str, Any],
    *,
    type_aliases: Mapping[str, str] | None = None,
    data_aliases: Mapping[str, str] | None = None,
) -> Parsed:
    """The event's type and the ids it names; problems instead for an event that does not fit.

    ``data_aliases`` maps the names our models use inside ``data`` to the sender's own
    (``{"id": "applicantId"}``), for a sender whose field names differ from our assumptions.
    """
    if data_aliases and isinstance(payload.get("data"), dict):
        data = dict(payload["data"])
        for ours, theirs in data_aliases.items():
            if ours not in data and theirs in data:
                data[ours] = data[theirs]
        payload = {**payload, "data": data}
    try:
        event = parse_event(payload, dict(type_aliases or {}))
    except ValidationError as exc:
        sent = payload.get("type")
        name = str(sent) if isinstance(sent, str) and sent else "unknown"
        name = (type_aliases or {}).get(name, name)
        return Parsed(name, name in KNOWN_TYPES, problems=(describe(exc),))
    return Parsed(event.type, not isinstance(event, UnknownEvent), subjects(event))


def subjects(event: ApplicantHired | OnboardingFileCompleted | UnknownEvent) -> dict[str, str]:
    """The applicant (and job, onboarding file) the event names."""
    if isinstance(event, ApplicantHired):
        named = {"person": event.data.id, "job": event.data.job_id}
    elif isinstance(event, OnboardingFileCompleted):
        named = {"person": event.data.applicant_id, "onboarding_file": event.data.id}
    else:
        return {}
    return {kind: value for kind, value in named.items() if value}
