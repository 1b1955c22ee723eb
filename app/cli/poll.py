"""``hirehook poll``: poll a tenant's connection now, or back-fill it from a date."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any

import typer

from app.cli.common import load_settings, with_services
from app.cli.output import print_json


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from app.poller.run import utc

    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date (2026-01-31 or 2026-01-31T08:00:00Z)",
            param_hint="--since",
        ) from None


async def _poll(
    services: Any,
    tenant: str,
    source: str,
    name: str | None,
    since: datetime | None,
    resources: list[str],
    wait_s: float,
    as_json: bool,
) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.poller.run import PageDone, Poller, polled_connections

    found = [
        c
        for c in await polled_connections(services)
        if c.tenant_slug == tenant and c.source == source and (name is None or c.name == name)
    ]
    if not found:
        typer.echo(
            f"no enabled {source} connection of tenant {tenant!r} has options.polling", err=True
        )
        return 2
    connection = found[0]
    poller = Poller(services)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[recorded]} new"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def advance(done: PageDone) -> None:
            task = tasks.get(done.resource)
            if task is None:
                task = bar.add_task(done.resource, total=done.total, recorded=0)
                tasks[done.resource] = task
            elif done.total is not None:
                bar.update(task, total=max(done.total, bar.tasks[task].completed + done.items))
            bar.update(
                task,
                advance=done.items,
                recorded=bar.tasks[task].fields["recorded"] + done.recorded,
            )

        end = time.monotonic() + wait_s
        while True:
            report = await poller.run(
                connection, resources=resources or None, since=since, progress=advance
            )
            if report.status != "busy" or time.monotonic() >= end:
                break
            # Another poll of this connection (a worker's) holds the lock: wait for it.
            await asyncio.sleep(1.0)
    if report.status == "busy":
        typer.echo("another poll of this connection is running; try again later", err=True)
        return 1
    if report.error:
        typer.echo(f"error: {report.error}", err=True)
    if as_json:
        print_json(report)
        return 0 if report.status == "done" else 1
    for r in report.resources:
        state = "complete" if r.swept else (f"stopped: {r.error}" if r.error else "incomplete")
        typer.echo(
            f"{r.name}: {r.pages} page(s), {r.items} item(s), {r.recorded} recorded, "
            f"{r.duplicates} already recorded, {r.quarantined} quarantined; {state}"
        )
    return 0 if report.status == "done" else 1


def poll(
    tenant: Annotated[str, typer.Argument(help="Tenant slug.")],
    source: Annotated[str, typer.Argument(help="ATS source of the polled connection.")],
    since: Annotated[
        str | None,
        typer.Option(
            help="Back-fill: list everything updated after this ISO date (UTC if no zone)."
        ),
    ] = None,
    resource: Annotated[
        list[str] | None, typer.Option(help="Only this resource (repeatable); default all.")
    ] = None,
    connection: Annotated[
        str | None, typer.Option(help="Connection name, if the tenant has several.")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait while a worker is polling this connection.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Poll a connection now (from its cursor), or back-fill it with --since; records go
    through the same intake as the workers' polls, and what is already recorded is skipped."""
    start = _since(since)
    code = asyncio.run(
        with_services(
            load_settings(),
            lambda s: _poll(s, tenant, source, connection, start, resource or [], wait, as_json),
        )
    )
    raise typer.Exit(code)
