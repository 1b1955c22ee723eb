"""Running Alembic from code (CLI, tests, `hirehook dev`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_dsn: str) -> Config:
    """The project's Alembic config pointed at ``database_dsn``."""
    config = Config(str(_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    config.attributes["database_url"] = database_dsn
    return config


def upgrade(database_dsn: str, revision: str = "head") -> None:
    """Migrate up (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(database_dsn), revision)


def downgrade(database_dsn: str, revision: str) -> None:
    """Migrate down (blocking)."""
    command.downgrade(alembic_config(database_dsn), revision)


async def upgrade_async(database_dsn: str, revision: str = "head") -> None:
    """Migrate from inside a running event loop."""
    await asyncio.to_thread(upgrade, database_dsn, revision)


async def downgrade_async(database_dsn: str, revision: str) -> None:
    """Migrate down from inside a running event loop."""
    await asyncio.to_thread(downgrade, database_dsn, revision)
