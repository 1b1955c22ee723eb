"""What a record's page reads beyond the record: the normalized rows it names, the event its
delivery carries, and its open dead letters grouped by cause and reason."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# A record's subjects, by the normalized table that holds each.
SUBJECT_KINDS = {
    "person": "candidate",
    "candidate": "candidate",
    "job": "job",
    "application": "application",
}
_ROW = {
    kind: text(
        f"""
        SELECT external_id, version, fetched_at, deleted_at FROM {kind}
        WHERE tenant_id = :tenant_id AND source = :source AND external_id = :external_id
        """  # noqa: S608 - the table name is one of three constants
    )
    for kind in ("candidate", "job", "application")
}
_DELIVERED = text("SELECT body FROM delivery WHERE record_id = :record_id")


@dataclass(frozen=True, slots=True)
class Written:
    """A normalized row a record names: the version its delivered event carried (None if no
    event was built or kept) and the row's version now (None once deleted by retention or an
    erasure)."""

    kind: str
    external_id: str
    delivered_version: int | None
    version: int | None
    fetched_at: datetime | None
    deleted: bool


def _delivered_versions(body: bytes | None) -> dict[tuple[str, str], int]:
    """(kind, external id) -> version of the views an event body carries."""
    if not body:
        return {}
    try:
        data = orjson.loads(body).get("data") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    views: list[tuple[str, Any]] = [
        ("candidate", data.get("candidate")),
        ("job", data.get("job")),
        *(("application", v) for v in data.get("applications") or []),
    ]
    found: dict[tuple[str, str], int] = {}
    for kind, view in views:
        if isinstance(view, dict) and isinstance(view.get("version"), int):
            found[(kind, str(view.get("id")))] = view["version"]
    return found


async def written(
    conn: AsyncConnection,
    *,
    record_id: uuid.UUID,
    tenant_id: int,
    source: str,
    subjects: Mapping[str, Any],
) -> list[Written]:
    """The normalized rows a record's subjects and its delivered event name."""
    body = (await conn.execute(_DELIVERED, {"record_id": record_id})).scalar()
    delivered = _delivered_versions(body)
    named = {(SUBJECT_KINDS[k], str(v)) for k, v in subjects.items() if k in SUBJECT_KINDS and v}
    out: list[Written] = []
    for kind, external_id in sorted(named | set(delivered)):
        row = (
            await conn.execute(
                _ROW[kind],
                {"tenant_id": tenant_id, "source": source, "external_id": external_id},
            )
        ).first()
        out.append(
            Written(
                kind=kind,
                external_id=external_id,
                delivered_version=delivered.get((kind, external_id)),
                version=None if row is None else row.version,
                fetched_at=None if row is None else row.fetched_at,
                deleted=row is not None and row.deleted_at is not None,
            )
        )
    return out


_GROUPS = text(
    """
    SELECT d.kind, d.reason, d.stage, count(*) AS n,
           min(d.created_at) AS oldest, max(d.created_at) AS newest,
           array_agg(DISTINCT t.slug ORDER BY t.slug) AS tenants,
           array_agg(DISTINCT d.source ORDER BY d.source) AS sources
    FROM dead_letter d JOIN tenant t ON t.id = d.tenant_id
    WHERE d.resolved_at IS NULL
      AND (CAST(:tenant AS text) IS NULL OR t.slug = :tenant)
      AND (CAST(:source AS text) IS NULL OR d.source = :source)
    GROUP BY d.kind, d.reason, d.stage
    ORDER BY d.kind, count(*) DESC, d.reason, d.stage
    """
)


@dataclass(frozen=True, slots=True)
class LetterGroup:
    """Open dead letters of one cause (kind), reason and stage."""

    kind: str
    reason: str
    stage: str
    count: int
    oldest: datetime
    newest: datetime
    tenants: list[str]
    sources: list[str]


async def letter_groups(
    conn: AsyncConnection, *, tenant: str | None = None, source: str | None = None
) -> list[LetterGroup]:
    """Open dead letters grouped by cause, reason and stage, largest groups first per cause."""
    rows = await conn.execute(_GROUPS, {"tenant": tenant, "source": source})
    return [
        LetterGroup(
            kind=r.kind,
            reason=r.reason,
            stage=r.stage,
            count=r.n,
            oldest=r.oldest,
            newest=r.newest,
            tenants=list(r.tenants),
            sources=list(r.sources),
        )
        for r in rows
    ]
