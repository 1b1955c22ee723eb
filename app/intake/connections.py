"""Looking up a tenant's connection to a source, with secrets decrypted and a short cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from cachetools import TTLCache
from sqlalchemy import ColumnElement, Row
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.crypto import Cipher
from app.platform.db import DB_ERRORS, run_bounded
from app.platform.errors import unavailable
from app.store import connections as sql

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Per process; a connection's configuration is a few KB.
_CACHE_SIZE = 10_000


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
    # Configurations parsed from this connection's options and secrets, by kind: the object
    # is cached by ConnectionStore, so a request reuses the parse instead of validating again.
    _parsed: dict[Callable[..., Any], Any] = field(default_factory=dict, repr=False, compare=False)

    def parsed(self, parse: Callable[[dict[str, Any], dict[str, Any]], T]) -> T:
        """``parse(options, secrets)``, computed once per cached connection; a ValueError (a
        configuration broken since it was loaded) is raised again on every call."""
        try:
            cached: T = self._parsed[parse]
        except KeyError:
            cached = self._parsed[parse] = parse(self.options, self.secrets)
        return cached


CacheKey = tuple[str, str, str]


class ConnectionStore:
    """Reads connections; caches hits and misses briefly so floods do not reach the database.

    Hits and misses live in separate bounded LRU caches: a flood of unknown ids can only
    evict other unknown ids, never the configuration of a tenant that is really sending.
    """

    def __init__(
        self, engine: AsyncEngine, cipher: Cipher, ttl_s: float, timeout_s: float = 2.0
    ) -> None:
        self._engine = engine
        self._timeout_s = timeout_s
        self._cipher = cipher
        self._ttl_s = ttl_s
        self._hits: TTLCache[CacheKey, ConnectionInfo] = TTLCache(_CACHE_SIZE, max(ttl_s, 1e-9))
        self._misses: TTLCache[CacheKey, bool] = TTLCache(_CACHE_SIZE, max(ttl_s, 1e-9))
        # Workers look a connection up for every record they take: a query and a decryption
        # each, a quarter of a busy worker's time, for a row that rarely changes.
        self._by_id: TTLCache[int, ConnectionInfo] = TTLCache(_CACHE_SIZE, max(ttl_s, 1e-9))
        self.queries = 0
        self._inflight: dict[CacheKey, asyncio.Future[Row[Any] | None]] = {}

    def invalidate(self) -> None:
        """Forget everything cached (after configuration changes)."""
        self._hits.clear()
        self._misses.clear()
        self._by_id.clear()

    async def by_tenant(self, tenant_slug: str, source: str) -> ConnectionInfo | None:
        """The enabled connection of ``tenant_slug`` to ``source`` (its first, by name)."""
        return await self._cached(
            ("tenant", tenant_slug, source), lambda: sql.by_tenant(tenant_slug)
        )

    async def by_account(self, source: str, account: str) -> ConnectionInfo | None:
        """The enabled connection whose ATS account id is ``account`` (shared endpoints)."""
        return await self._cached(("account", account, source), lambda: sql.by_account(account))

    async def by_option(self, source: str, name: str, value: str) -> ConnectionInfo | None:
        """The enabled connection whose option ``name`` equals ``value`` (an OAuth client id)."""
        return await self._cached(
            (f"option:{name}", value, source), lambda: sql.by_option(name, value)
        )

    async def by_credential(self, source: str, credential_id: str) -> ConnectionInfo | None:
        """The enabled connection whose sender presents this identity (a Basic username...)."""
        return await self._cached(
            ("credential", credential_id, source), lambda: sql.by_credential(credential_id)
        )

    async def by_enabled_id(self, source: str, connection_id: int) -> ConnectionInfo | None:
        """The enabled connection with this id (a bearer token names it)."""
        return await self._cached(
            ("id", str(connection_id), source), lambda: sql.by_id_condition(connection_id)
        )

    async def by_tenant_id(self, tenant_id: int, source: str) -> ConnectionInfo | None:
        """The enabled connection of tenant ``tenant_id`` to ``source`` (its first, by name)."""
        return await self._cached(
            ("tenant_id", str(tenant_id), source), lambda: sql.by_tenant_id(tenant_id)
        )

    async def by_id(self, connection_id: int) -> ConnectionInfo | None:
        """A connection by its id, enabled or not (workers finishing old records)."""
        if self._ttl_s > 0 and (hit := self._by_id.get(connection_id)) is not None:
            return hit
        async with self._engine.connect() as conn:
            row = await sql.by_id(conn, connection_id)
        info = None if row is None else self.info(row)
        if info is not None and self._ttl_s > 0:
            self._by_id[connection_id] = info
        return info

    async def enabled(self, source: str) -> list[ConnectionInfo]:
        """Every enabled connection to ``source``."""
        async with self._engine.connect() as conn:
            rows = await sql.enabled(conn, source)
        return [self.info(row) for row in rows]

    async def _cached(
        self, key: CacheKey, condition: Callable[[], ColumnElement[bool]]
    ) -> ConnectionInfo | None:
        if "\x00" in key[1]:
            # No column holds U+0000 (a %00 in a tenant slug or an account in a URL), so no
            # connection matches; asking PostgreSQL would fail the statement instead, and the
            # sender would be told to retry (a 503) something that is simply unknown.
            return None
        # The condition is built only on a miss: a SQL expression costs more than the hit.
        if self._ttl_s > 0:
            hit = self._hits.get(key)
            if hit is not None:
                return hit
            if key in self._misses:
                return None

        # Concurrent misses of one key share one query (a burst of copies of one delivery, a
        # cold cache after start-up): one pooled connection for all of them, not one each.
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._find(key, condition))
            self._inflight[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        try:
            row = await asyncio.shield(pending)
        except DB_ERRORS as exc:
            raise unavailable(f"database: {type(exc).__name__}") from exc
        info = None
        if row is not None:
            try:
                info = self.info(row)
            except ValueError as exc:
                # Secrets nobody can read (a key removed from HIREHOOK_SECRET_KEY, a damaged
                # row) authenticate no sender: answered like an unknown connection, so a
                # stranger cannot tell it exists, and shouted about in the logs.
                log.error("connection.secrets_unreadable", connection_id=row.id, detail=str(exc))
        if self._ttl_s > 0:
            if info is None:
                self._misses[key] = True
            else:
                self._hits[key] = info
        return info

    async def _find(
        self, key: CacheKey, condition: Callable[[], ColumnElement[bool]]
    ) -> Row[Any] | None:
        async def find() -> Row[Any] | None:
            async with self._engine.connect() as conn:
                self.queries += 1
                return await sql.find_enabled(conn, key[2], condition())

        # On the request path: bounded like the recording (Intake), cleanup left behind.
        return await run_bounded(find, self._timeout_s)

    def _settled(self, key: CacheKey, done: asyncio.Future[Row[Any] | None]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            # Retrieved here too: every caller may have gone (their requests cancelled).
            done.exception()

    def info(self, row: Row[Any]) -> ConnectionInfo:
        """A row of :mod:`app.store.connections` with its secrets decrypted."""
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
