"""The ``hirehook`` command, one module per command group."""

from __future__ import annotations

import typer

from app.cli.admin import connections_cli, keys_cli, records_cli
from app.cli.dead_letters import dead_cli
from app.cli.dev import dev
from app.cli.poll import poll
from app.cli.privacy import erase, maintain
from app.cli.send import send_cli
from app.cli.server import api, keygen, migrate, worker
from app.cli.smartrecruiters import smartrecruiters_cli
from app.cli.tenants import tenants_cli

cli = typer.Typer(
    help="Hirehook: receive, verify, deduplicate and enrich ATS events.", no_args_is_help=True
)
for command in (api, worker, migrate, keygen, dev, poll, erase, maintain):
    cli.command()(command)
cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(send_cli, name="send")
cli.add_typer(dead_cli, name="dead-letters")
cli.add_typer(smartrecruiters_cli, name="smartrecruiters")
cli.add_typer(keys_cli, name="admin-keys")
cli.add_typer(records_cli, name="records")
cli.add_typer(connections_cli, name="connections")


def main() -> None:
    """Console entry point."""
    cli()
