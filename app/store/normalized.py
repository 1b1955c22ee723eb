"""Upserts of normalized candidates, jobs and applications whose version only moves forward."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.intake.payload import strip_nul
from app.store.driver import fetch_any

ResourceKind = Literal["candidate", "job", "application"]


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


# What a delivered event shows of a resource (:func:`stored_view`).
_VIEW_COLUMNS = {
    kind: f"external_id, {', '.join(FIELDS[kind])}, version, fetched_at, source_updated_at, "
    "deleted_at"
    for kind in FIELDS
}


def _upsert_sql(kind: ResourceKind, *, deleted: bool) -> TextClause:
    columns = [
        "tenant_id",
        "source",
        "external_id",
        *FIELDS[kind],
        "document",
        "source_updated_at",
        "fetched_at",
        "version",
        "deleted_at",
    ]
    moved = ["fetched_at", "version", "deleted_at"]
    if not deleted:
        # A deletion keeps the last known fields; anything else replaces them.
        moved += ["document", "source_updated_at", *FIELDS[kind]]
    values = [
        "CAST(:document AS jsonb)" if column == "document" else f":{column}" for column in columns
    ]
    updates = ", ".join(f"{column} = excluded.{column}" for column in moved)
    # Built once per shape: statement construction, not the database, dominated a job's CPU.
    return text(
        f"""
        INSERT INTO {kind} ({", ".join(columns)}) VALUES ({", ".join(values)})
        ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {updates}, updated_at = now()
        WHERE {kind}.version < excluded.version
          -- The ATS's own modification time, where it gives one, must not go back either.
          AND ({kind}.source_updated_at IS NULL OR excluded.source_updated_at IS NULL
               OR excluded.source_updated_at >= {kind}.source_updated_at)
        RETURNING {_VIEW_COLUMNS[kind]}
        """  # noqa: S608 - table and column names come from the constants above
    )


_UPSERTS = {
    (kind, deleted): _upsert_sql(kind, deleted=deleted)
    for kind in FIELDS
    for deleted in (False, True)
}
_VIEWS = {
    kind: text(
        f"SELECT {_VIEW_COLUMNS[kind]} FROM {kind} "  # noqa: S608
        "WHERE tenant_id = :tenant_id AND source = :source AND external_id = :external_id"
    )
    for kind in FIELDS
}


async def upsert_view(
    conn: AsyncConnection, *, tenant_id: int, source: str, resource: Resource
) -> dict[str, Any] | None:
    """Insert or update one resource unless a newer version is stored, giving the
    :func:`stored_view` of the row it wrote (None if a newer version was stored). The row
    stays locked until the caller's transaction ends, so the view holds for that transaction
    unless it writes the row again."""
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "source": source,
        "external_id": resource.external_id,
        "document": orjson.dumps(strip_nul(dict(resource.document))).decode(),
        "source_updated_at": resource.source_updated_at,
        "fetched_at": resource.fetched_at,
        "version": resource.version,
        "deleted_at": resource.fetched_at if resource.deleted else None,
    }
    params.update({name: _text(resource.fields.get(name)) for name in FIELDS[resource.kind]})
    statement = _UPSERTS[(resource.kind, resource.deleted)]
    # One per resource of every job: past SQLAlchemy's execution once the transaction has
    # begun (the job's claim or finish began it).
    rows = await fetch_any(conn, statement, params)
    return _view(resource.kind, rows[0]) if rows else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def stored_view(
    conn: AsyncConnection, *, tenant_id: int, source: str, kind: ResourceKind, external_id: str
) -> dict[str, Any] | None:
    """The stored (newest) normalized state of one resource, as delivered to the tenant."""
    row = (
        await conn.execute(
            _VIEWS[kind], {"tenant_id": tenant_id, "source": source, "external_id": external_id}
        )
    ).first()
    return None if row is None else _view(kind, row)


def _view(kind: ResourceKind, row: Any) -> dict[str, Any]:
    """The view of a row of :data:`_VIEW_COLUMNS` (SQLAlchemy's or the driver's: both read
    by attribute)."""
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
