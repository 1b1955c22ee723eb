"""`hirehook migrate` from an installed package (the container image: `pip install .`, with
alembic.ini and migrations/ copied to the working directory, not into site-packages)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg

from app.platform.settings import Settings
from tests.support.app import TEST_SECRET_KEY, host_port
from tests.support.paths import REPO


def installed(site: Path) -> None:
    """The package alone, as a wheel installs it: no alembic.ini or migrations/ beside it."""
    shutil.copytree(REPO / "app", site / "app", ignore=shutil.ignore_patterns("__pycache__"))


async def migrate(site: Path, cwd: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}
    env.update(
        PYTHONPATH=str(site),
        HIREHOOK_DATABASE_URL=database_url,
        HIREHOOK_SECRET_KEY=TEST_SECRET_KEY,
        HIREHOOK_REDIS_URL="redis://127.0.0.1:1/0",
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "migrate"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def fresh_database(settings: Settings, name: str) -> str:
    host, port = host_port(str(settings.database_url))
    admin = await asyncpg.connect(str(settings.database_url))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return f"postgresql://postgres@{host}:{port}/{name}"


async def test_an_installed_package_migrates_from_the_directory_holding_the_migrations(
    tmp_path: Path, settings: Settings
) -> None:
    site, workdir = tmp_path / "site", tmp_path / "srv"
    installed(site)
    workdir.mkdir()
    shutil.copy(REPO / "alembic.ini", workdir)
    shutil.copytree(
        REPO / "migrations", workdir / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    url = await fresh_database(settings, "installed_migrate")

    result = await migrate(site, workdir, url)

    assert result.returncode == 0, result.stdout + result.stderr
    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    heads = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert version is not None and version in heads[-1], (version, heads[-1])


async def test_an_installed_package_without_its_migrations_says_where_to_run_it(
    tmp_path: Path, settings: Settings
) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    installed(site)
    elsewhere.mkdir()
    url = await fresh_database(settings, "installed_no_migrations")

    result = await migrate(site, elsewhere, url)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    [line] = result.stderr.strip().splitlines()
    assert "alembic.ini and migrations/ were not found" in line, line
    assert "project's directory" in line, line
