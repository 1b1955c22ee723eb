"""Creating and updating tenants, their connections and destinations (idempotent upserts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import Connection, Destination, Tenant


async def upsert_tenant(
    conn: AsyncConnection, *, slug: str, name: str, retention_days: int | None = None
) -> int:
    """The tenant's id, created or updated (name, retention)."""
    result = await conn.execute(
        insert(Tenant)
        .values(slug=slug, name=name, retention_days=retention_days)
        .on_conflict_do_update(
            index_elements=[Tenant.slug],
            set_={"name": name, "retention_days": retention_days, "updated_at": func.now()},
        )
        .returning(Tenant.id)
    )
    tenant_id: int = result.scalar_one()
    return tenant_id


async def upsert_connection(
    conn: AsyncConnection,
    *,
    tenant_id: int,
    source: str,
    name: str,
    account: str | None,
    enabled: bool,
    secrets: bytes,
    options: dict[str, Any],
    credential_ids: list[str],
) -> None:
    """Create or replace one connection (``secrets`` already encrypted)."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "source": source,
        "name": name,
        "account": account,
        "enabled": enabled,
        "secrets": secrets,
        "options": options,
        "credential_ids": credential_ids,
    }
    await conn.execute(
        insert(Connection)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[Connection.tenant_id, Connection.source, Connection.name],
            set_={**values, "updated_at": func.now()},
        )
    )


async def upsert_destination(
    conn: AsyncConnection, *, tenant_id: int, url: str, secret: bytes, enabled: bool
) -> None:
    """Create or replace the tenant's destination (``secret`` already encrypted)."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "url": url,
        "secret": secret,
        "enabled": enabled,
    }
    await conn.execute(
        insert(Destination)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[Destination.tenant_id], set_={**values, "updated_at": func.now()}
        )
    )
