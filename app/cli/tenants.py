"""``hirehook tenants``: tenants and connections from a TOML file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.admin import JsonOption, connection_line, emit
from app.cli.client import admin
from app.cli.common import load_settings
from app.cli.output import Column, print_json, print_list
from app.platform.settings import Settings

tenants_cli = typer.Typer(help="Tenants and connections.", no_args_is_help=True)


async def load_tenants(settings: Settings, path: Path) -> int:
    """Apply the tenants file at ``path``; the number of connections written."""
    from app.admin.tenants_file import apply_tenants, read_tenants_file
    from app.platform.crypto import Cipher
    from app.platform.db import create_engine

    engine = create_engine(settings)
    try:
        return await apply_tenants(
            read_tenants_file(path), engine=engine, cipher=Cipher(settings.secret_keys)
        )
    finally:
        await engine.dispose()


@tenants_cli.command("load")
def tenants_load(path: Path, as_json: JsonOption = False) -> None:
    """Create or update the tenants and connections declared in a TOML file."""
    try:
        written = asyncio.run(load_tenants(load_settings(), path))
    except ValueError as exc:
        # A connection its source cannot use: name it and the setting, load nothing.
        typer.echo(f"{path}: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        print_json({"connections_written": written})
        return
    typer.echo(f"{written} connection(s) written from {path}")


def _tenant_line(t: Any) -> str:
    return (
        f"{t.id}\t{t.slug}\t{t.name}\tconnections={t.connections} enabled={t.enabled_connections}"
    )


_TENANT_COLUMNS: list[Column] = [
    ("ID", lambda t: t.id),
    ("SLUG", lambda t: t.slug),
    ("NAME", lambda t: t.name),
    ("CONNECTIONS", lambda t: t.connections),
    ("ENABLED", lambda t: t.enabled_connections),
    ("CREATED", lambda t: t.created_at),
]


def _tenant_detail(t: Any, as_json: bool) -> None:
    emit(t, as_json=as_json, line=_tenant_line)
    if not as_json:
        for connection in t.connection_list:
            typer.echo("  " + connection_line(connection))
        if t.destination is not None:
            state = "enabled" if t.destination.enabled else "disabled"
            typer.echo(f"  destination {t.destination.url} ({state})")


@tenants_cli.command("list")
def tenants_list(as_json: JsonOption = False) -> None:
    """List tenants."""
    from app.admin import schemas

    tenants = admin(lambda api: api.get("/tenants", list[schemas.TenantView]))
    print_list(tenants, as_json=as_json, columns=_TENANT_COLUMNS)


@tenants_cli.command("show")
def tenants_show(slug: str, as_json: JsonOption = False) -> None:
    """Show a tenant, its connections and destination."""
    from app.admin import schemas

    _tenant_detail(admin(lambda api: api.get(f"/tenants/{slug}", schemas.TenantDetail)), as_json)


@tenants_cli.command("create")
def tenants_create(slug: str, name: str, as_json: JsonOption = False) -> None:
    """Create a tenant (add connections with `hirehook connections create`)."""
    from app.admin import schemas

    spec = schemas.TenantCreate(slug=slug, name=name)
    _tenant_detail(admin(lambda api: api.post("/tenants", schemas.TenantDetail, spec)), as_json)


@tenants_cli.command("update")
def tenants_update(slug: str, name: str, as_json: JsonOption = False) -> None:
    """Rename a tenant."""
    from app.admin import schemas

    spec = schemas.TenantUpdate(name=name)
    _tenant_detail(
        admin(lambda api: api.patch(f"/tenants/{slug}", schemas.TenantDetail, spec)), as_json
    )


@tenants_cli.command("disable")
def tenants_disable(slug: str, as_json: JsonOption = False) -> None:
    """Disable every connection of a tenant: its senders are refused (401)."""
    _set_tenant(slug, "disable", as_json)


@tenants_cli.command("enable")
def tenants_enable(slug: str, as_json: JsonOption = False) -> None:
    """Enable every connection of a tenant."""
    _set_tenant(slug, "enable", as_json)


def _set_tenant(slug: str, action: str, as_json: bool) -> None:
    from app.admin import schemas

    _tenant_detail(
        admin(lambda api: api.post(f"/tenants/{slug}/{action}", schemas.TenantDetail)), as_json
    )


@tenants_cli.command("destination")
def tenants_destination(
    slug: str,
    url: str,
    secret_file: Annotated[
        Path,
        typer.Option("--secret-file", help="A file holding the whsec_ signing secret; '-': stdin."),
    ],
    disabled: Annotated[bool, typer.Option("--disabled", help="Set it disabled.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or replace where a tenant's normalized events are delivered."""
    import sys

    from app.admin import schemas

    secret = (sys.stdin.read() if str(secret_file) == "-" else secret_file.read_text()).strip()
    spec = schemas.DestinationSet(url=url, secret=secret, enabled=not disabled)
    _tenant_detail(
        admin(lambda api: api.put(f"/tenants/{slug}/destination", schemas.TenantDetail, spec)),
        as_json,
    )
