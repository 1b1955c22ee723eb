"""Upserts of normalized candidates, jobs and applications whose version only moves forward."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import Application, Candidate, Job
from app.workers.context import Resource, ResourceKind

_MODELS: dict[ResourceKind, type[Candidate] | type[Job] | type[Application]] = {
    "candidate": Candidate,
    "job": Job,
    "application": Application,
}
FIELDS: dict[ResourceKind, tuple[str, ...]] = {
    "candidate": ("first_name", "last_name", "email"),
    "job": ("title", "status", "location"),
    "application": ("candidate_external_id", "job_external_id", "status"),
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    return text or None


def _clean(value: Any) -> Any:
    # PostgreSQL refuses \u0000 in JSONB; an ATS field holding one must not wedge the record.
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _clean(v) for k, v in value.items()}
    return value


async def upsert(conn: AsyncConnection, *, tenant_id: int, source: str, resource: Resource) -> bool:
    """Insert or update one resource unless a newer version is stored; True if it was written."""
    model = _MODELS[resource.kind]
    table = cast(Table, model.__table__)
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "source": source,
        "external_id": resource.external_id,
        "document": _clean(dict(resource.document)),
        "source_updated_at": resource.source_updated_at,
        "fetched_at": resource.fetched_at,
        "version": resource.version,
        "deleted_at": resource.fetched_at if resource.deleted else None,
    }
    values.update({name: _text(resource.fields.get(name)) for name in FIELDS[resource.kind]})
    stmt = insert(table).values(**values)
    excluded = stmt.excluded
    moved = ["fetched_at", "version", "deleted_at"]
    if not resource.deleted:
        # A deletion keeps the last known fields; anything else replaces them.
        moved += ["document", "source_updated_at", *FIELDS[resource.kind]]
    newer: ColumnElement[bool] = and_(
        table.c.version < excluded.version,
        # The ATS's own modification time, where it gives one, must not go back either.
        or_(
            table.c.source_updated_at.is_(None),
            excluded.source_updated_at.is_(None),
            excluded.source_updated_at >= table.c.source_updated_at,
        ),
    )
    upserted = stmt.on_conflict_do_update(
        index_elements=[table.c.tenant_id, table.c.source, table.c.external_id],
        set_={**{name: excluded[name] for name in moved}, "updated_at": func.now()},
        where=newer,
    ).returning(table.c.id)
    return (await conn.execute(upserted)).first() is not None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def stored_view(
    conn: AsyncConnection, *, tenant_id: int, source: str, kind: ResourceKind, external_id: str
) -> dict[str, Any] | None:
    """The stored (newest) normalized state of one resource, as delivered to the tenant."""
    table = cast(Table, _MODELS[kind].__table__)
    row = (
        await conn.execute(
            select(table).where(
                table.c.tenant_id == tenant_id,
                table.c.source == source,
                table.c.external_id == external_id,
            )
        )
    ).first()
    if row is None:
        return None
    view: dict[str, Any] = {"id": row.external_id}
    view.update({name: getattr(row, name) for name in FIELDS[kind]})
    view.update(
        {
            "version": row.version,
            "fetched_at": _iso(row.fetched_at),
            "source_updated_at": _iso(row.source_updated_at),
            "deleted": row.deleted_at is not None,
        }
    )
    return view
