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


async def test_json_columns_decode_alike_on_both_paths_an_integer_past_64_bits_included(
    services: Services,
) -> None:
    """A JSON column reads as the same value through either path, exactly: no integer past
    64 bits turned into a float (as orjson would, which is why it does not decode them)."""
    value = '{"id": 123456789012345678901234567890, "name": "Zoë", "n": [1.5, null, true]}'
    expected = {"id": 123456789012345678901234567890, "name": "Zoë", "n": [1.5, None, True]}
    statement = text("SELECT CAST(:v AS jsonb) AS doc, CAST('{\"a\": 1}' AS jsonb) AS small")
    async with services.autocommit.connect() as conn:
        [driven] = await fetch_any(conn, statement, {"v": value})
    async with services.engine.connect() as conn:
        [alchemy] = (await conn.execute(statement, {"v": value})).all()
    assert isinstance(driven, Row) and not isinstance(alchemy, Row)
    for row in (driven, alchemy):
        assert (row.doc, row.small) == (expected, {"a": 1})
