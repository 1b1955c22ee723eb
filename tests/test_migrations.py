"""Migrations apply and revert cleanly on an empty database."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.migrate import downgrade_async, upgrade_async
from app.models import Base
from app.settings import Settings


async def _tables(dsn: str) -> set[str]:
    engine = create_async_engine(dsn)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        names = set(rows.scalars())
    await engine.dispose()
    return names


async def test_upgrade_downgrade_upgrade(settings: Settings) -> None:
    assert settings.database_url is not None
    admin_url = str(settings.database_url)
    conn = await asyncpg.connect(admin_url)
    await conn.execute("DROP DATABASE IF EXISTS hirehook_migrations")
    await conn.execute("CREATE DATABASE hirehook_migrations")
    await conn.close()
    dsn = settings.database_dsn.rsplit("/", 1)[0] + "/hirehook_migrations"
    expected = {t.name for t in Base.metadata.sorted_tables}

    await upgrade_async(dsn)
    assert await _tables(dsn) == expected | {"alembic_version"}
    await downgrade_async(dsn, "base")
    assert await _tables(dsn) == {"alembic_version"}
    await upgrade_async(dsn)
    assert await _tables(dsn) == expected | {"alembic_version"}
