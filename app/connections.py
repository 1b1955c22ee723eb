"""Looking up a tenant's connection to a source, with secrets decrypted and a short cache."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.crypto import Cipher
from app.db import DB_ERRORS
from app.errors import unavailable
from app.models import Connection, Tenant


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What a router or job needs to know of one connection."""

    id: int
    tenant_id: int
    tenant_slug: str
    source: str
    name: str
    account: str | None
    secrets: dict[str, Any] = field(repr=False)
    options: dict[str, Any]


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


class ConnectionStore:
    """Reads connections; caches hits and misses briefly so floods do not reach the database."""

    def __init__(
        self, engine: AsyncEngine, cipher: Cipher, ttl_s: float, timeout_s: float = 5.0
    ) -> None:
        self._engine = engine
        self._timeout_s = timeout_s
        self._cipher = cipher
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, str, str], tuple[float, ConnectionInfo | None]] = {}

    def invalidate(self) -> None:
        """Forget everything cached (after configuration changes)."""
        self._cache.clear()

    async def by_tenant(self, tenant_slug: str, source: str) -> ConnectionInfo | None:
        """The enabled connection of ``tenant_slug`` to ``source`` (its first, by name)."""
        return await self._cached(("tenant", tenant_slug, source), Tenant.slug == tenant_slug)

    async def by_account(self, source: str, account: str) -> ConnectionInfo | None:
        """The enabled connection whose ATS account id is ``account`` (shared endpoints)."""
        return await self._cached(("account", account, source), Connection.account == account)

    async def by_option(self, source: str, name: str, value: str) -> ConnectionInfo | None:
        """The enabled connection whose option ``name`` equals ``value`` (an OAuth client id)."""
        return await self._cached(
            (f"option:{name}", value, source), Connection.options[name].astext == value
        )

    async def by_tenant_id(self, tenant_id: int, source: str) -> ConnectionInfo | None:
        """The enabled connection of tenant ``tenant_id`` to ``source`` (its first, by name)."""
        return await self._cached(("tenant_id", str(tenant_id), source), Tenant.id == tenant_id)

    async def by_id(self, connection_id: int) -> ConnectionInfo | None:
        """A connection by its id, enabled or not (workers finishing old records)."""
        query = _SELECT.where(Connection.id == connection_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else self._info(row)

    async def _cached(self, key: tuple[str, str, str], condition: Any) -> ConnectionInfo | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        query = (
            _SELECT.where(condition, Connection.source == key[2], Connection.enabled.is_(True))
            .order_by(Connection.name)
            .limit(1)
        )
        try:
            async with asyncio.timeout(self._timeout_s), self._engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except DB_ERRORS as exc:
            raise unavailable(f"database: {type(exc).__name__}") from exc
        info = None if row is None else self._info(row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self._ttl_s, info)
        return info

    def _info(self, row: Row[Any]) -> ConnectionInfo:
        return ConnectionInfo(
            id=row.id,
            tenant_id=row.tenant_id,
            tenant_slug=row.tenant_slug,
            source=row.source,
            name=row.name,
            account=row.account,
            secrets=self._cipher.decrypt_json(row.secrets),
            options=dict(row.options or {}),
        )
