"""``hirehook tenants``: tenants and connections from a TOML file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from app.cli.common import load_settings
from app.settings import Settings

tenants_cli = typer.Typer(help="Tenants and connections.", no_args_is_help=True)


async def load_tenants(settings: Settings, path: Path) -> int:
    """Apply the tenants file at ``path``; the number of connections written."""
    from app.crypto import Cipher
    from app.db import create_engine
    from app.tenants import apply_tenants, read_tenants_file

    engine = create_engine(settings)
    try:
        return await apply_tenants(
            read_tenants_file(path), engine=engine, cipher=Cipher(settings.secret_keys)
        )
    finally:
        await engine.dispose()


@tenants_cli.command("load")
def tenants_load(path: Path) -> None:
    """Create or update the tenants and connections declared in a TOML file."""
    try:
        written = asyncio.run(load_tenants(load_settings(), path))
    except ValueError as exc:
        # A connection its source cannot use: name it and the setting, load nothing.
        typer.echo(f"{path}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{written} connection(s) written from {path}")
