"""The ``hirehook`` command, one module per command group."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from app.cli.admin import connections_cli, keys_cli, records_cli
from app.cli.client import TARGET
from app.cli.common import VERBOSITY
from app.cli.dead_letters import dead_cli
from app.cli.dev import dev
from app.cli.poll import poll
from app.cli.privacy import erase, maintain
from app.cli.send import send_cli
from app.cli.server import api, keygen, migrate, worker
from app.cli.smartrecruiters import smartrecruiters_cli
from app.cli.stats import stats
from app.cli.tenants import tenants_cli

cli = typer.Typer(
    help="Hirehook: receive, verify, deduplicate and enrich ATS events.",
    no_args_is_help=True,
    # main() turns a failure into one line; --debug re-raises it, and Python's plain
    # traceback copies into an issue as it is (typer's is drawn in boxes cut at 80 columns).
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"hirehook {version('hirehook')}")
        raise typer.Exit


@cli.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of a failure (HIREHOOK_DEBUG=1).")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Log at the configured level (default: warnings only)."
        ),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="The Hirehook API the operator commands (records, dead-letters, tenants, "
            "connections, stats, erase) go to (HIREHOOK_URL); without it they run in process "
            "on this host's settings.",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Its admin key, hh_admin_... (HIREHOOK_ADMIN_KEY, which other users of the "
            "machine cannot read in the process list).",
            show_default=False,
        ),
    ] = None,
) -> None:
    if debug:
        os.environ["HIREHOOK_DEBUG"] = "1"
    VERBOSITY.verbose = verbose
    # Set on every invocation: tests run many in one process.
    TARGET.url, TARGET.key = url, key


for command in (api, worker, migrate, keygen, dev, poll, erase, maintain, stats):
    cli.command()(command)
cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(send_cli, name="send")
cli.add_typer(dead_cli, name="dead-letters")
cli.add_typer(smartrecruiters_cli, name="smartrecruiters")
cli.add_typer(keys_cli, name="admin-keys")
cli.add_typer(records_cli, name="records")
cli.add_typer(connections_cli, name="connections")


def main() -> None:
    """Console entry point: a failure is one line on stderr and exit status 1; a usage
    mistake (an unknown option, a bad value) one line and exit status 2."""
    # typer (>= 0.29) carries its own copy of click: these are its exception classes.
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    from app.cli.errors import debug_requested, describe

    try:
        # Not standalone: click would print a usage mistake as a framed usage box.
        code = cli(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        if debug_requested():
            raise
        typer.echo(f"error: {describe(exc)}", err=True)
        sys.exit(1)
    # typer.Exit(n) comes back as n; a command's own return value means success.
    sys.exit(code if isinstance(code, int) else 0)
