"""Statements sent through asyncpg's own connection, past SQLAlchemy's execution.

For the few statements run once per event or per job, SQLAlchemy's execution around the
statement (the compiled-cache look-up, the adapted cursor run in a greenlet, the result
wrapping) costs about as much CPU as asyncpg's own exchange. asyncpg prepares each statement
once per connection (its statement cache) either way.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection

_COMPILED: dict[tuple[str, int], tuple[str, tuple[str, ...]]] = {}


class Row(asyncpg.Record):  # type: ignore[misc]
    """A row whose columns are also attributes, as SQLAlchemy's rows are: callers of a
    statement moved past SQLAlchemy read its rows as before."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def driver_sql(conn: AsyncConnection, statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """``statement`` in the driver's own parameter style (``$1``), and the order of its
    named parameters. For module-level statements only: compiled once per process."""
    key = (conn.dialect.name + "+" + conn.dialect.driver, id(statement))
    if key not in _COMPILED:
        compiled = statement.compile(dialect=conn.dialect)
        _COMPILED[key] = (compiled.string, tuple(compiled.positiontup or ()))
    return _COMPILED[key]


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection | None:
    """asyncpg's connection under ``conn``, or None for another driver."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    return driver if isinstance(driver, asyncpg.Connection) else None


async def driver_in_transaction(conn: AsyncConnection) -> asyncpg.Connection | None:
    """asyncpg's connection under ``conn`` when a statement sent through it belongs to the
    caller's transaction: SQLAlchemy's has begun and the driver's has too (SQLAlchemy begins
    it lazily, on its first statement). None otherwise: the caller goes through SQLAlchemy."""
    if not conn.in_transaction():
        return None
    driver = await driver_of(conn)
    return driver if driver is not None and driver.is_in_transaction() else None


async def fetch_any(
    conn: AsyncConnection, statement: TextClause, params: dict[str, Any]
) -> list[Any]:
    """``statement``'s rows (attributes by column) on a connection of an autocommit engine,
    each statement its own transaction, through asyncpg's connection; through SQLAlchemy on
    any other connection (another driver, or a transaction the statement belongs to)."""
    sync = conn.sync_connection
    if sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        driver = await driver_of(conn)
        if driver is not None and not driver.is_in_transaction():
            return await fetch(conn, driver, statement, params)
    return list((await conn.execute(statement, params)).all())


async def fetch(
    conn: AsyncConnection,
    driver: asyncpg.Connection,
    statement: TextClause,
    params: dict[str, Any],
) -> list[asyncpg.Record]:
    """``statement`` with ``params`` on ``driver``, asyncpg's connection under ``conn`` (from
    :func:`driver_of` outside a transaction, :func:`driver_in_transaction` inside one).

    A refusal by the server (a constraint, a deadlock) leaves the connection good, unless the
    server was closing it (an administrator's shutdown, a terminated backend); inside a
    transaction, the transaction has failed and the caller's ``begin()`` rolls it back as it
    would SQLAlchemy's error. A connection whose state is unknown afterwards (lost, cancelled
    mid-statement, a client-side error) is invalidated, as SQLAlchemy does, so the pool never
    hands it out again.
    """
    sql, names = driver_sql(conn, statement)
    try:
        rows: list[asyncpg.Record] = await driver.fetch(
            sql, *(params[name] for name in names), record_class=Row
        )
    except asyncpg.PostgresError as exc:
        if driver.is_closed():
            await conn.invalidate(exc)
        raise
    except BaseException as exc:
        await conn.invalidate(exc if isinstance(exc, Exception) else None)
        raise
    return rows
