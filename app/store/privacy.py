"""Retention, erasure and clean-up statements (docs/privacy.md); every one bounded or narrow.

Purges empty bodies and keep rows: a record's key and first answer (``record_key``) are never
touched here, so a re-delivery after a purge or an erasure is still a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store import attempts

_TENANTS = text("SELECT id, slug, retention_days FROM tenant ORDER BY id")
_TENANT_ID = text("SELECT id FROM tenant WHERE slug = :slug")

_PURGE_RECORDS = text(
    """
    UPDATE record SET headers = NULL, payload = NULL, raw_body = NULL, purged_at = now()
    WHERE (id, received_at) IN (
        SELECT id, received_at FROM record
        WHERE tenant_id = :tenant_id AND received_at < :before AND purged_at IS NULL
        ORDER BY received_at
        LIMIT :limit
    )
    """
)
_PURGE_NORMALIZED = {
    kind: text(
        f"""
        DELETE FROM {kind} WHERE id IN (
            SELECT id FROM {kind} WHERE tenant_id = :tenant_id AND updated_at < :before
            LIMIT :limit
        )
        """  # noqa: S608 - the table name is one of three constants
    )
    for kind in ("candidate", "application", "job")
}
# A delivery still owed when its body expires is given up: an empty body is no event.
_EMPTY_DELIVERY = (
    "body = ''::bytea, done_at = COALESCE(done_at, now()), "
    "last_error = CASE WHEN done_at IS NULL THEN :why ELSE last_error END"
)
_PURGE_DELIVERIES = text(
    f"""
    UPDATE delivery SET {_EMPTY_DELIVERY}
    WHERE record_id IN (
        SELECT record_id FROM delivery
        WHERE tenant_id = :tenant_id AND created_at < :before AND octet_length(body) > 0
        LIMIT :limit
    )
    """  # noqa: S608 - constant SQL
)
_CLEAN = {
    table: text(
        f"""
        DELETE FROM {table} WHERE record_id IN (
            SELECT record_id FROM {table} WHERE done_at < :before LIMIT :limit
        )
        """  # noqa: S608 - the table name is one of two constants
    )
    for table in ("outbox", "delivery")
}

_NAMED_RECORDS = text(
    """
    SELECT id FROM record
    WHERE tenant_id = :tenant_id AND source = :source
      AND COALESCE(subjects ->> 'person', subjects ->> 'candidate') = :candidate_id
    """
)
# The candidate's own e-mail addresses, as the records naming them carry them: a string under
# an e-mail-named key (email, e-mail, emailAddress, ...) of a JSON object that also holds the
# candidate id as a value (KeldairHR's ``data``, a SmartRecruiters candidate, ...). Only such
# an object: a record also names recruiters and hiring managers, whose addresses are not the
# candidate's and would take other people's records with them.
_EMAILS_BESIDE_ID = text(
    """
    SELECT DISTINCT lower(btrim(f.value)) AS email
    FROM record r,
         jsonb_path_query(r.payload, 'strict $.** ? (@.type() == "object")') AS o(obj),
         jsonb_each_text(o.obj) AS f(key, value)
    WHERE r.id = ANY(:ids)
      AND f.key ~* '^e-?mail(_?address)?$' AND f.value LIKE '%_@_%'
      AND EXISTS (SELECT 1 FROM jsonb_each(o.obj) AS e(key, value)
                  WHERE jsonb_typeof(e.value) IN ('string', 'number')
                    AND e.value #>> '{}' = :candidate_id)
    """
)
# The records of the tenant whose stored bodies name the person although their ``subjects``
# do not (an unknown event type, a quarantined one, another event of a batch body), one
# keyset batch at a time. A hit: within the source, any string or number in ``payload``
# equal to the candidate id, or the id as a JSON string in ``raw_body``; in any source of the
# tenant, a string in ``payload`` equal to one of the candidate's e-mail addresses
# (case-insensitive), or the address as a JSON string in ``raw_body`` (ASCII case-insensitive).
_SCAN_BODIES = text(
    """
    SELECT id, received_at,
        (source = :source AND (
            EXISTS (SELECT 1 FROM jsonb_path_query(payload, 'strict $.**') AS v(value)
                    WHERE jsonb_typeof(v.value) IN ('string', 'number')
                      AND v.value #>> '{}' = :candidate_id)
            OR position(CAST(:quoted_id AS bytea) IN raw_body) > 0))
        OR (cardinality(CAST(:emails AS text[])) > 0 AND (
            EXISTS (SELECT 1 FROM jsonb_path_query(payload, 'strict $.**') AS v(value)
                    WHERE jsonb_typeof(v.value) = 'string'
                      AND lower(v.value #>> '{}') = ANY(CAST(:emails AS text[])))
            OR EXISTS (SELECT 1 FROM unnest(CAST(:quoted_emails AS text[])) AS q(quoted)
                       WHERE position(q.quoted IN lower(encode(raw_body, 'escape'))) > 0)))
        AS hit
    FROM record
    WHERE tenant_id = :tenant_id AND purged_at IS NULL
      AND (received_at, id) > (:after_at, :after_id)
    ORDER BY received_at, id
    LIMIT :limit
    """
)
_ERASE_BY_ID = text(
    """
    UPDATE record SET headers = NULL, payload = NULL, raw_body = NULL,
                      subjects = '{}'::jsonb, purged_at = COALESCE(purged_at, now())
    WHERE id = ANY(:ids)
    """
)
_KNOWN_EMAIL = text(
    """
    SELECT lower(email) FROM candidate
    WHERE tenant_id = :tenant_id AND source = :source AND external_id = :candidate_id
      AND email IS NOT NULL AND email <> ''
    """
)
# Closed as well: a retry of an erased record's letter would run its stage on nothing.
_ERASE_DEAD_LETTERS = text(
    """
    UPDATE dead_letter SET detail = '(erased)',
                           resolution = CASE WHEN resolved_at IS NULL THEN 'erased'
                                             ELSE resolution END,
                           resolved_at = COALESCE(resolved_at, now())
    WHERE record_id = ANY(:ids) RETURNING id
    """
)
_ERASE_DELIVERIES = text(
    f"UPDATE delivery SET {_EMPTY_DELIVERY} WHERE record_id = ANY(:ids) "  # noqa: S608
    "RETURNING record_id"
)
_ERASE_APPLICATIONS = text(
    """
    DELETE FROM application
    WHERE tenant_id = :tenant_id AND source = :source AND candidate_external_id = :candidate_id
    RETURNING external_id
    """
)
_ERASE_CANDIDATES = text(
    """
    DELETE FROM candidate
    WHERE tenant_id = :tenant_id AND source = :source AND external_id = :candidate_id
    RETURNING id
    """
)
_AUDIT = text(
    """
    INSERT INTO erasure (tenant, source, candidate_id, actor, counts)
    VALUES (:tenant, :source, :candidate_id, :actor, CAST(:counts AS jsonb))
    RETURNING id, erased_at
    """
)


@dataclass(frozen=True, slots=True)
class TenantRetention:
    """A tenant and the days its data is kept (None: its own setting is unset)."""

    id: int
    slug: str
    retention_days: int | None


async def tenants(conn: AsyncConnection) -> list[TenantRetention]:
    """Every tenant with its own retention."""
    rows = (await conn.execute(_TENANTS)).all()
    return [TenantRetention(r.id, r.slug, r.retention_days) for r in rows]


async def tenant_id(conn: AsyncConnection, slug: str) -> int | None:
    """The id of the tenant ``slug``, if it exists."""
    found: int | None = (await conn.execute(_TENANT_ID, {"slug": slug})).scalar()
    return found


async def purge_records(
    conn: AsyncConnection, *, tenant_id: int, before: datetime, limit: int
) -> int:
    """Empty the bodies of up to ``limit`` of the tenant's records received before ``before``."""
    params = {"tenant_id": tenant_id, "before": before, "limit": limit}
    return (await conn.execute(_PURGE_RECORDS, params)).rowcount


async def purge_normalized(
    conn: AsyncConnection, *, tenant_id: int, before: datetime, limit: int
) -> int:
    """Delete up to ``limit`` per table of the tenant's normalized rows last written before
    ``before`` (a later event fetches them again)."""
    params = {"tenant_id": tenant_id, "before": before, "limit": limit}
    return sum([(await conn.execute(sql, params)).rowcount for sql in _PURGE_NORMALIZED.values()])


async def purge_deliveries(
    conn: AsyncConnection, *, tenant_id: int, before: datetime, limit: int
) -> int:
    """Empty the bodies of up to ``limit`` of the tenant's deliveries made before ``before``."""
    params = {"tenant_id": tenant_id, "before": before, "limit": limit, "why": "purged"}
    return (await conn.execute(_PURGE_DELIVERIES, params)).rowcount


async def clean(conn: AsyncConnection, *, table: str, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` rows of ``outbox`` or ``delivery`` done before ``before``."""
    return (await conn.execute(_CLEAN[table], {"before": before, "limit": limit})).rowcount


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure changed in PostgreSQL."""

    record_ids: list[uuid.UUID]
    dead_letters: int
    deliveries: int
    candidates: int
    application_ids: list[str]


async def erase(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    source: str,
    candidate_id: str,
    email: str | None = None,
    batch: int = 1000,
) -> Erased:
    """Erase what is stored about one candidate of one tenant and source (docs/privacy.md):
    the records whose ``subjects`` name the candidate, then those whose bodies name the
    candidate's id or one of their e-mail addresses (``email``, the one the normalized
    candidate holds, and those beside the id in the records naming them), scanned ``batch``
    records at a time."""
    named = {"tenant_id": tenant_id, "source": source, "candidate_id": candidate_id}
    record_ids = list((await conn.execute(_NAMED_RECORDS, named)).scalars())
    addresses = {
        *(await conn.execute(_EMAILS_BESIDE_ID, {**named, "ids": record_ids})).scalars(),
        *(await conn.execute(_KNOWN_EMAIL, named)).scalars(),
        (email or "").strip().lower(),
    }
    await conn.execute(_ERASE_BY_ID, {"ids": record_ids})
    record_ids += await _erase_bodies_naming(conn, named, sorted(a for a in addresses if a), batch)
    letters = len((await conn.execute(_ERASE_DEAD_LETTERS, {"ids": record_ids})).all())
    deliveries = len(
        (await conn.execute(_ERASE_DELIVERIES, {"ids": record_ids, "why": "erased"})).all()
    )
    # The destination's answers to the records' deliveries may quote the event.
    await attempts.erase(conn, record_ids)
    applications = list((await conn.execute(_ERASE_APPLICATIONS, named)).scalars())
    candidates = len((await conn.execute(_ERASE_CANDIDATES, named)).all())
    return Erased(record_ids, letters, deliveries, candidates, applications)


async def _erase_bodies_naming(
    conn: AsyncConnection, named: dict[str, Any], emails: list[str], batch: int
) -> list[uuid.UUID]:
    """Empty the tenant's records whose bodies name the candidate; their ids."""
    scan = {
        **named,
        "quoted_id": orjson.dumps(named["candidate_id"]),
        "emails": emails,
        "quoted_emails": [orjson.dumps(e).decode() for e in emails],
        "after_at": datetime.min.replace(tzinfo=UTC),
        "after_id": uuid.UUID(int=0),
        "limit": batch,
    }
    erased: list[uuid.UUID] = []
    while True:
        rows = (await conn.execute(_SCAN_BODIES, scan)).all()
        hits = [row.id for row in rows if row.hit]
        if hits:
            await conn.execute(_ERASE_BY_ID, {"ids": hits})
            erased += hits
        if len(rows) < batch:
            return erased
        scan["after_at"], scan["after_id"] = rows[-1].received_at, rows[-1].id


async def audit(
    conn: AsyncConnection,
    *,
    tenant: str,
    source: str,
    candidate_id: str,
    actor: str,
    counts: Mapping[str, Any],
) -> tuple[int, datetime]:
    """Write the audit row of one erasure; its id and time."""
    row = (
        await conn.execute(
            _AUDIT,
            {
                "tenant": tenant,
                "source": source,
                "candidate_id": candidate_id,
                "actor": actor,
                "counts": orjson.dumps(dict(counts)).decode(),
            },
        )
    ).one()
    return row.id, row.erased_at


# One bounded statement of a purge or clean-up: rows touched, at most ``limit``.
Step = Callable[..., Awaitable[int]]
