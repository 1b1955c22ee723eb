"""Admin API keys, the replay log, and the admin's reads and writes of tenants and connections."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import Row, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import AdminKey, Connection, ConsoleSession, Destination, Tenant

# --- admin keys -------------------------------------------------------------------------------


async def create_key(conn: AsyncConnection, *, name: str, digest: bytes, prefix: str) -> Row[Any]:
    """A new key row (the caller hashed the key); IntegrityError if the name is taken."""
    result = await conn.execute(
        insert(AdminKey)
        .values(name=name, digest=digest, prefix=prefix)
        .returning(*AdminKey.__table__.c)
    )
    return result.one()


async def list_keys(conn: AsyncConnection) -> list[Row[Any]]:
    """Every key, revoked ones included, oldest first."""
    return list((await conn.execute(select(AdminKey).order_by(AdminKey.id))).all())


async def revoke_key(conn: AsyncConnection, key_id: int) -> Row[Any] | None:
    """Revoke a key (once; a second revocation keeps the first time); None if unknown."""
    result = await conn.execute(
        update(AdminKey)
        .where(AdminKey.id == key_id)
        .values(revoked_at=func.coalesce(AdminKey.revoked_at, func.now()))
        .returning(*AdminKey.__table__.c)
    )
    return result.first()


# Looked up by its unique digest (an index probe; the digest of a guess reveals nothing about a
# real key), and stamped in the same statement: one round trip per admin request.
_USE_KEY = text(
    """
    UPDATE admin_key SET last_used_at = now()
    WHERE digest = :digest AND revoked_at IS NULL
    RETURNING id, name, digest
    """
)


async def use_key(conn: AsyncConnection, digest: bytes) -> Row[Any] | None:
    """The live key with this digest, its last use stamped; None if unknown or revoked."""
    return (await conn.execute(_USE_KEY, {"digest": digest})).first()


# --- console sessions -------------------------------------------------------------------------

# The key behind a live session, stamped as used: one round trip per console request, and a
# revoked key's sessions open nothing even before they are deleted.
_USE_SESSION = text(
    """
    UPDATE admin_key SET last_used_at = now()
    FROM console_session s
    WHERE s.digest = :digest AND s.expires_at > now()
      AND admin_key.id = s.key_id AND admin_key.revoked_at IS NULL
    RETURNING admin_key.id, admin_key.name
    """
)


async def start_session(
    conn: AsyncConnection, *, digest: bytes, key_id: int, max_age_s: int
) -> None:
    """A console session for ``key_id`` lasting ``max_age_s``; sessions already expired (of
    anyone) go, so the table holds only live ones."""
    await conn.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= func.now()))
    await conn.execute(
        insert(ConsoleSession).values(
            digest=digest,
            key_id=key_id,
            expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, max_age_s),
        )
    )


async def use_session(conn: AsyncConnection, digest: bytes) -> Row[Any] | None:
    """The live key of a live session (id, name); None if either is gone."""
    return (await conn.execute(_USE_SESSION, {"digest": digest})).first()


async def end_session(conn: AsyncConnection, digest: bytes) -> None:
    """Forget a session (logging out)."""
    await conn.execute(delete(ConsoleSession).where(ConsoleSession.digest == digest))


# --- replay log -------------------------------------------------------------------------------


async def start_replay(conn: AsyncConnection, *, actor: str, filters: dict[str, Any]) -> int:
    """A replay row with nothing replayed yet; its id."""
    result = await conn.execute(
        text(
            "INSERT INTO replay (actor, filters, count) "
            "VALUES (:actor, CAST(:filters AS jsonb), 0) RETURNING id"
        ),
        {"actor": actor, "filters": orjson.dumps(filters).decode()},
    )
    replay_id: int = result.scalar_one()
    return replay_id


async def add_to_replay(conn: AsyncConnection, replay_id: int, ids: list[uuid.UUID]) -> None:
    """Count ``ids`` as replayed by ``replay_id`` (in the transaction that reopened them)."""
    await conn.execute(
        text(
            "UPDATE replay SET record_ids = record_ids || CAST(:ids AS uuid[]), "
            "count = count + :n WHERE id = :id"
        ),
        {"ids": ids, "n": len(ids), "id": replay_id},
    )


async def replays_of(conn: AsyncConnection, record_id: uuid.UUID) -> list[Row[Any]]:
    """The replays that included a record, oldest first."""
    result = await conn.execute(
        text(
            "SELECT id, actor, created_at, count FROM replay "
            "WHERE :id = ANY(record_ids) ORDER BY id"
        ),
        {"id": record_id},
    )
    return list(result.all())


# Records whose bodies an erasure (or retention) emptied: never replayed, or the destination
# would be sent an empty, signed event (docs/privacy.md).
_BODILESS = text(
    "SELECT id FROM record WHERE id = ANY(:ids) AND (purged_at IS NOT NULL OR payload IS NULL)"
)
# Only records whose enrichment can run again: known types with an outbox row (a quarantined
# record goes through its dead letter instead) whose bodies are still there. Locked so two
# replays do not interleave.
_REOPEN_OUTBOX = text(
    """
    WITH target AS (
        SELECT r.id FROM record r JOIN outbox o ON o.record_id = r.id
        WHERE r.id = ANY(:ids) AND r.known AND r.state <> 'quarantined'
          AND r.purged_at IS NULL AND r.payload IS NOT NULL
        FOR UPDATE OF r, o
    ), reopened AS (
        UPDATE outbox SET done_at = NULL, attempts = 0, available_at = now(), last_error = NULL
        WHERE record_id IN (SELECT id FROM target)
        RETURNING record_id
    ), reset AS (
        UPDATE record SET state = 'received', processed_at = NULL
        WHERE id IN (SELECT record_id FROM reopened)
    )
    SELECT record_id FROM reopened
    """
)
# A delivery the destination acknowledged (2xx) is never sent again; one that gave up is,
# unless its body was emptied (erased or purged: there is no event left to send).
_REOPEN_FAILED_DELIVERY = text(
    """
    UPDATE delivery SET done_at = NULL, attempts = 0, available_at = now(), last_error = NULL,
                        last_status = NULL
    WHERE record_id = ANY(:ids) AND done_at IS NOT NULL AND octet_length(body) > 0
      AND (last_status IS NULL OR last_status NOT BETWEEN 200 AND 299)
    RETURNING record_id
    """
)
_CLOSE_LETTERS = text(
    """
    UPDATE dead_letter SET resolved_at = now(), resolution = 'retried', note = :note
    WHERE record_id = ANY(:ids) AND resolved_at IS NULL AND stage IN ('enrichment', 'delivery')
    """
)


async def bodiless(conn: AsyncConnection, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The records among ``ids`` whose bodies were erased or purged (a replay skips them)."""
    return list((await conn.execute(_BODILESS, {"ids": ids})).scalars())


async def reopen_for_replay(
    conn: AsyncConnection, ids: list[uuid.UUID], *, note: str
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Reopen the enrichment of ``ids`` and their failed deliveries, closing their open dead
    letters with ``note``; (records owed an enrichment job, records owed a delivery job).
    A record whose bodies were erased or purged is never reopened."""
    enrich = list((await conn.execute(_REOPEN_OUTBOX, {"ids": ids})).scalars())
    deliver = list((await conn.execute(_REOPEN_FAILED_DELIVERY, {"ids": enrich})).scalars())
    await conn.execute(_CLOSE_LETTERS, {"ids": enrich, "note": note})
    return enrich, deliver


# --- tenants and connections ------------------------------------------------------------------


async def list_tenants(conn: AsyncConnection) -> list[Row[Any]]:
    """Every tenant with how many connections it has and how many are enabled."""
    query = (
        select(
            Tenant.id,
            Tenant.slug,
            Tenant.name,
            Tenant.created_at,
            Tenant.updated_at,
            func.count(Connection.id).label("connections"),
            func.count(Connection.id).filter(Connection.enabled).label("enabled_connections"),
        )
        .outerjoin(Connection, Connection.tenant_id == Tenant.id)
        .group_by(Tenant.id)
        .order_by(Tenant.slug)
    )
    rows: list[Row[Any]] = list((await conn.execute(query)).all())  # type: ignore[arg-type]
    return rows


async def get_tenant(conn: AsyncConnection, slug: str) -> Row[Any] | None:
    """One tenant by slug."""
    return (await conn.execute(select(Tenant).where(Tenant.slug == slug))).first()


async def create_tenant(conn: AsyncConnection, *, slug: str, name: str) -> Row[Any]:
    """A new tenant; IntegrityError if the slug is taken."""
    result = await conn.execute(
        insert(Tenant).values(slug=slug, name=name).returning(*Tenant.__table__.c)
    )
    return result.one()


async def rename_tenant(conn: AsyncConnection, slug: str, name: str) -> Row[Any] | None:
    """Rename a tenant; None if unknown."""
    result = await conn.execute(
        update(Tenant)
        .where(Tenant.slug == slug)
        .values(name=name, updated_at=func.now())
        .returning(*Tenant.__table__.c)
    )
    return result.first()


async def set_tenant_enabled(conn: AsyncConnection, tenant_id: int, enabled: bool) -> int:
    """Enable or disable every connection of a tenant; how many changed."""
    result = await conn.execute(
        update(Connection)
        .where(Connection.tenant_id == tenant_id, Connection.enabled.is_not(enabled))
        .values(enabled=enabled, updated_at=func.now())
    )
    return result.rowcount


async def destination(conn: AsyncConnection, tenant_id: int) -> Row[Any] | None:
    """The tenant's destination (``secret`` encrypted), enabled or not."""
    return (
        await conn.execute(select(Destination).where(Destination.tenant_id == tenant_id))
    ).first()


_CONNECTION = select(
    Connection.id,
    Connection.tenant_id,
    Tenant.slug.label("tenant_slug"),
    Connection.source,
    Connection.name,
    Connection.account,
    Connection.enabled,
    Connection.secrets,
    Connection.options,
    Connection.created_at,
    Connection.updated_at,
).join(Tenant, Tenant.id == Connection.tenant_id)


async def list_connections(
    conn: AsyncConnection, *, tenant: str | None = None, source: str | None = None
) -> list[Row[Any]]:
    """Connections (secrets encrypted), by tenant, source and name."""
    query = _CONNECTION.order_by(Tenant.slug, Connection.source, Connection.name)
    if tenant is not None:
        query = query.where(Tenant.slug == tenant)
    if source is not None:
        query = query.where(Connection.source == source)
    return list((await conn.execute(query)).all())


async def get_connection(
    conn: AsyncConnection, connection_id: int, *, lock: bool = False
) -> Row[Any] | None:
    """One connection (secrets encrypted); ``lock`` holds it for an update."""
    query = _CONNECTION.where(Connection.id == connection_id)
    if lock:
        query = query.with_for_update(of=Connection)
    return (await conn.execute(query)).first()


async def insert_connection(
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
) -> int:
    """A new connection; IntegrityError if (tenant, source, name) or (source, account) is taken."""
    result = await conn.execute(
        insert(Connection)
        .values(
            tenant_id=tenant_id,
            source=source,
            name=name,
            account=account,
            enabled=enabled,
            secrets=secrets,
            options=options,
            credential_ids=credential_ids,
        )
        .returning(Connection.id)
    )
    connection_id: int = result.scalar_one()
    return connection_id


async def update_connection(conn: AsyncConnection, connection_id: int, **values: Any) -> None:
    """Set the given columns (already validated, secrets already encrypted)."""
    await conn.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(**values, updated_at=func.now())
    )
