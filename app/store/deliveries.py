"""Deliveries owed to a tenant's destination, and the destination itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.driver import fetch_any

_DESTINATION = text("SELECT url, secret FROM destination WHERE tenant_id = :tenant_id AND enabled")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one run: its record's ``id``, ``tenant_id``, ``body`` and
    ``attempts`` (this run's included), as :func:`app.store.work.claim_many` returns them."""

    id: uuid.UUID
    tenant_id: int
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class Owed:
    """The deliveries a finishing statement owed (:func:`app.store.work.finish_processed`),
    claimed for its job, and the enabled destination (``url`` and encrypted ``secret``) of
    each of their tenants."""

    deliveries: list[Claimed] = field(default_factory=list)
    destinations: dict[int, Any] = field(default_factory=dict)

    @property
    def ids(self) -> set[uuid.UUID]:
        """The records owed."""
        return {d.id for d in self.deliveries}


async def destination(conn: AsyncConnection, tenant_id: int) -> Row[Any] | None:
    """The tenant's enabled destination: ``url`` and the encrypted ``secret``."""
    rows = await fetch_any(conn, _DESTINATION, {"tenant_id": tenant_id})
    return rows[0] if rows else None
