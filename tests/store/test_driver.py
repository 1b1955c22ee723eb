"""Statements past SQLAlchemy (app/store/driver.py): on an autocommit engine's connection they
go through asyncpg and their rows read as SQLAlchemy's do; inside a transaction they stay in
it, through SQLAlchemy."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text

from app.services import Services
from app.store.driver import Row, fetch_any

_SELECT = text("SELECT CAST(:n AS int) AS n, 'x' AS label")
_INSERT = text("INSERT INTO tenant (slug, name) VALUES (:slug, :slug) RETURNING slug")


async def test_on_an_autocommit_connection_rows_come_from_asyncpg_and_read_by_attribute(
    services: Services,
) -> None:
    async with services.autocommit.connect() as conn:
        [row] = await fetch_any(conn, _SELECT, {"n": 7})
    assert isinstance(row, asyncpg.Record) and isinstance(row, Row)
    assert (row.n, row.label, row["n"]) == (7, "x", 7)
    assert not hasattr(row, "missing")


async def test_inside_a_transaction_the_statement_belongs_to_it(services: Services) -> None:
    async with services.engine.connect() as conn, conn.begin():
        [row] = await fetch_any(conn, _INSERT, {"slug": "rolled-back"})
        assert not isinstance(row, asyncpg.Record)
        assert row.slug == "rolled-back"
        await conn.rollback()
    async with services.autocommit.connect() as conn:
        assert (
            await fetch_any(conn, text("SELECT slug FROM tenant WHERE slug = 'rolled-back'"), {})
            == []
        )
