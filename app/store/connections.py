"""Reading connections (with their tenant's slug); secrets stay encrypted here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import Connection, Tenant

_SELECT = select(
    Connection.id,
    Connection.tenant_id,
    Tenant.slug.label("tenant_slug"),
    Connection.source,
    Connection.name,
    Connection.account,
    Connection.secrets,
    Connection.options,
).join(Tenant, Tenant.id == Connection.tenant_id)


def by_tenant(slug: str) -> ColumnElement[bool]:
    """The tenant whose URL slug is ``slug``."""
    return Tenant.slug == slug


def by_tenant_id(tenant_id: int) -> ColumnElement[bool]:
    """The tenant with this id."""
    return Tenant.id == tenant_id


def by_account(account: str) -> ColumnElement[bool]:
    """The connection whose ATS account id (iCIMS customerId, ...) is ``account``."""
    return Connection.account == account


def by_credential(credential_id: str) -> ColumnElement[bool]:
    """The connection one of whose ``credential_ids`` is ``credential_id`` (GIN-indexed)."""
    return Connection.credential_ids.contains([credential_id])


def by_id_condition(connection_id: int) -> ColumnElement[bool]:
    """The connection with this id."""
    return Connection.id == connection_id


def by_option(name: str, value: str) -> ColumnElement[bool]:
    """The connection whose option ``name`` equals ``value`` (an OAuth client id, ...)."""
    condition: ColumnElement[bool] = Connection.options[name].astext == value
    return condition


async def find_enabled(
    conn: AsyncConnection, source: str, condition: ColumnElement[bool]
) -> Row[Any] | None:
    """The first enabled connection to ``source`` (by name) matching ``condition``."""
    query = (
        _SELECT.where(condition, Connection.source == source, Connection.enabled.is_(True))
        .order_by(Connection.name)
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def by_id(conn: AsyncConnection, connection_id: int) -> Row[Any] | None:
    """A connection by id, enabled or not (workers finishing old records)."""
    return (await conn.execute(_SELECT.where(Connection.id == connection_id))).first()


async def enabled(conn: AsyncConnection, source: str) -> list[Row[Any]]:
    """Every enabled connection to ``source`` (the poller walks them)."""
    query = _SELECT.where(Connection.source == source, Connection.enabled.is_(True)).order_by(
        Connection.id
    )
    return list((await conn.execute(query)).all())


async def polled(conn: AsyncConnection, connection_id: int | None = None) -> list[Row[Any]]:
    """Every enabled connection, of any source, configured for polling (``options.polling``);
    only ``connection_id`` when given."""
    query = _SELECT.where(Connection.enabled.is_(True), Connection.options.has_key("polling"))
    if connection_id is not None:
        query = query.where(Connection.id == connection_id)
    return list((await conn.execute(query.order_by(Connection.id))).all())
