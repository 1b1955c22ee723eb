"""What every job gets: the process's services and the record it works on."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.services import Services


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


# Database effects of a job, applied in the same transaction that marks its outbox row done.
Effects = Callable[[AsyncConnection], Awaitable[None]]
RecordHandler = Callable[[Services, RecordRow], Awaitable[Effects | None]]
