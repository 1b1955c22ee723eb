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


async def driver_for(conn: AsyncConnection) -> asyncpg.Connection | None:
    """asyncpg's connection under ``conn`` when a statement sent through it means what it
    would through SQLAlchemy; None otherwise (another driver, or a transaction SQLAlchemy has
    not begun on the driver yet: it begins lazily, on its first statement, and a statement
    sent past it would commit on its own)."""
    driver = await driver_of(conn)
    if driver is None:
        return None
    if driver.is_in_transaction():
        # The caller's transaction, begun: the statement belongs to it.
        return driver if conn.in_transaction() else None
    # Outside a transaction: each statement its own, on an autocommit engine's connection.
    sync = conn.sync_connection
    autocommit = sync is not None and (
        sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )
    return driver if autocommit else None


async def fetch_any(
    conn: AsyncConnection, statement: TextClause, params: dict[str, Any]
) -> list[Any]:
    """``statement``'s rows (attributes by column) through asyncpg's connection where that
    means the same as through SQLAlchemy (:func:`driver_for`: a transaction already begun, or
    an autocommit engine's connection), through SQLAlchemy otherwise."""
    driver = await driver_for(conn)
    if driver is not None:
        return await fetch(conn, driver, statement, params)
    return list((await conn.execute(statement, params)).all())


async def fetch(
    conn: AsyncConnection,
    driver: asyncpg.Connection,
    statement: TextClause,
    params: dict[str, Any],
) -> list[asyncpg.Record]:
    """``statement`` with ``params`` on ``driver``, asyncpg's connection under ``conn`` (from
    :func:`driver_of` or :func:`fetch_any`).

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
