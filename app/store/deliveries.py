"""Deliveries owed to a tenant's destination, and the destination itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.driver import fetch_any

# Created claimed, as work.claim_many would claim them (one attempt, leased): the job whose
# transaction owes them sends them next, and the claim and the destination's look-up would be
# two more round trips per batch. ``destination.tenant_id`` is unique.
_CREATE_CLAIMED = text(
    """
    WITH made AS (
        INSERT INTO delivery (record_id, tenant_id, event_type, body, attempts, available_at)
        SELECT d.record_id, d.tenant_id, d.event_type, d.body, 1,
               now() + make_interval(secs => :lease)
        FROM unnest(CAST(:ids AS uuid[]), CAST(:tenant_ids AS bigint[]),
                    CAST(:event_types AS text[]), CAST(:bodies AS bytea[]))
             AS d(record_id, tenant_id, event_type, body)
        WHERE EXISTS (SELECT 1 FROM destination WHERE tenant_id = d.tenant_id AND enabled)
        ORDER BY d.record_id
        ON CONFLICT (record_id) DO NOTHING
        RETURNING record_id, tenant_id, attempts
    )
    SELECT made.record_id, made.tenant_id, made.attempts, t.url, t.secret
    FROM made JOIN destination t ON t.tenant_id = made.tenant_id
    ORDER BY made.record_id
    """
)
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
    """The deliveries a finishing transaction owed, claimed for its job, and the enabled
    destination (``url`` and encrypted ``secret``) of each of their tenants."""

    deliveries: list[Claimed] = field(default_factory=list)
    destinations: dict[int, Any] = field(default_factory=dict)

    @property
    def ids(self) -> set[uuid.UUID]:
        """The records owed."""
        return {d.id for d in self.deliveries}


async def create_claimed(
    conn: AsyncConnection, owed: list[tuple[uuid.UUID, int, str, bytes]], *, lease_s: float
) -> Owed:
    """Owe each (record id, tenant id, event type, body) to its tenant's destination, if it
    has an enabled one, claimed for ``lease_s`` by the caller's job (one record's event, or a
    batch's). A crash before the sends leaves them to the sweeper once the lease is over, as
    for any claim."""
    if not owed:
        return Owed()
    params = {
        "ids": [o[0] for o in owed],
        "tenant_ids": [o[1] for o in owed],
        "event_types": [o[2] for o in owed],
        "bodies": [o[3] for o in owed],
        "lease": lease_s,
    }
    bodies = {o[0]: o[3] for o in owed}
    result = Owed()
    # Once per finishing transaction: past SQLAlchemy's execution once it has begun.
    for row in await fetch_any(conn, _CREATE_CLAIMED, params):
        result.deliveries.append(
            Claimed(row.record_id, row.tenant_id, bodies[row.record_id], row.attempts)
        )
        result.destinations.setdefault(row.tenant_id, row)
    return result


async def destination(conn: AsyncConnection, tenant_id: int) -> Row[Any] | None:
    """The tenant's enabled destination: ``url`` and the encrypted ``secret``."""
    rows = await fetch_any(conn, _DESTINATION, {"tenant_id": tenant_id})
    return rows[0] if rows else None
