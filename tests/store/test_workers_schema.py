"""The models and the migrations describe the same schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.platform.settings import Settings
from app.store.models import RECORD_PARTITION, Base


async def test_migrated_schema_matches_the_models(settings: Settings, migrated: None) -> None:
    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_server_default": False,
                # Partitions of ``record`` are made at run time, not by the models.
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and RECORD_PARTITION.match(name or ""))
                ),
            },
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(settings.database_dsn)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
