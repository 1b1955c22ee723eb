"""``hirehook send <source>``: correctly signed sample events, one command per source."""

from __future__ import annotations

import typer

from app.sources import REGISTRY

send_cli = typer.Typer(
    help="Send correctly signed sample events to a running instance.", no_args_is_help=True
)
for _source in REGISTRY.values():
    if _source.send is not None:
        send_cli.command(_source.name, help=_source.send.__doc__)(_source.send)
