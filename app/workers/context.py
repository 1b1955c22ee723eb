"""What every job gets (the process's services and the record it works on) and what a source's
handler gives back (normalized resources and the event to deliver)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from app.intake.connections import ConnectionInfo
from app.services import Services
from app.store.dead_letters import FailureKind
from app.store.normalized import Resource

T = TypeVar("T")


def process_singleton(ctx: dict[str, Any], name: str, build: Callable[[], T]) -> T:
    """The worker process's one ``name``, built on first use (inside the running loop)."""
    if name not in ctx:
        ctx[name] = build()
    value: T = ctx[name]
    return value


def process_slots(ctx: dict[str, Any], name: str) -> asyncio.Semaphore:
    """The worker process's semaphore called ``name``, of ``worker_concurrency`` slots.

    A batch job runs its records' handlers (or sends its deliveries) concurrently; without a
    bound shared by the process, twenty batch jobs of 64 would put 1,280 ATS calls (or
    requests to one vendor) in flight at once. With it a process has at most
    worker_concurrency of each in flight, as with one record per job.
    """
    services: Services = ctx["services"]
    return process_singleton(
        ctx, name, lambda: asyncio.Semaphore(services.settings.worker_concurrency)
    )


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
    # The ids the typed event named at intake ({"person": ..., "job": ...}); see app/schemas.
    subjects: dict[str, str] = field(default_factory=dict)
    received_at: datetime | None = None
    connection: ConnectionInfo | None = field(default=None, repr=False)

    def require_connection(self) -> ConnectionInfo:
        """The record's connection; a record always has one while its row exists."""
        if self.connection is None:
            raise EnrichmentError(
                "connection_missing", "the record's connection is gone", kind="configuration"
            )
        return self.connection


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
