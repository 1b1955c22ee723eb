"""What every job gets (the process's services and the record it works on) and what a source's
handler gives back (normalized resources and the event to deliver)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from app.connections import ConnectionInfo
from app.services import Services

ResourceKind = Literal["candidate", "job", "application"]
FailureKind = Literal["configuration", "pipeline"]


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A recorded event as a job sees it."""

    id: uuid.UUID
    tenant_id: int
    connection_id: int
    source: str
    event_type: str
    payload: Any
    headers: dict[str, str]
    attempts: int
    received_at: datetime | None = None
    connection: ConnectionInfo | None = field(default=None, repr=False)

    def require_connection(self) -> ConnectionInfo:
        """The record's connection; a record always has one while its row exists."""
        if self.connection is None:
            raise EnrichmentError(
                "connection_missing", "the record's connection is gone", kind="configuration"
            )
        return self.connection


@dataclass(frozen=True, slots=True)
class Resource:
    """One normalized candidate, job or application, ready to upsert.

    ``fields`` holds the normalized columns of its table (``first_name``, ``title``,
    ``candidate_external_id``, ...); ``document`` the ATS's own JSON, kept whole.
    """

    kind: ResourceKind
    external_id: str
    fields: Mapping[str, Any]
    document: Mapping[str, Any]
    fetched_at: datetime
    version: int
    source_updated_at: datetime | None = None
    deleted: bool = False


# Database effects of a job, applied in the same transaction that marks its outbox row done.
Effects = Callable[[AsyncConnection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What a handler learned about one record.

    ``event_type`` is the normalized type delivered to the tenant (``candidate.updated``, ...);
    ``data`` adds source-specific fields to the delivered event.
    """

    event_type: str
    resources: Sequence[Resource] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    effects: Effects | None = None


class EnrichmentError(Exception):
    """A failure no retry can fix (an event without the ids it needs, missing credentials)."""

    def __init__(self, reason: str, detail: str, *, kind: FailureKind = "pipeline") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.kind: FailureKind = kind


RecordHandler = Callable[[Services, RecordRow], Awaitable[Enrichment | None]]
