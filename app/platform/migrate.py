"""Running Alembic from code (CLI, tests, `hirehook dev`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

# A source checkout or an editable install has alembic.ini and migrations/ beside app/. An
# installed wheel (the container image) has only app/ in site-packages; there they are in the
# working directory the image copies them to.
_ROOT = Path(__file__).resolve().parents[2]


class MigrationsNotFoundError(RuntimeError):
    """Neither beside the package nor in the working directory."""


def project_root() -> Path:
    """The directory holding alembic.ini and migrations/."""
    for root in (_ROOT, Path.cwd()):
        if (root / "alembic.ini").is_file() and (root / "migrations" / "env.py").is_file():
            return root
    raise MigrationsNotFoundError(
        "alembic.ini and migrations/ were not found beside the installed package or in "
        f"{Path.cwd()}; run the command from the project's directory."
    )


def alembic_config(database_dsn: str) -> Config:
    """The project's Alembic config pointed at ``database_dsn``."""
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
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
