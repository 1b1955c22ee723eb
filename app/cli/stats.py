"""``hirehook stats``: records by state, duplicates, ack latency and backlog per tenant and
source, as the admin API's ``/v1/admin/stats`` answers them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from app.cli.client import admin
from app.cli.output import Column, print_json, table, timestamp


def _backlog(work: Any) -> str:
    if not work.pending:
        return "0"
    age = "-" if work.oldest_age_s is None else f"{work.oldest_age_s:.0f} s"
    return f"{work.pending} (oldest {age})"


_COLUMNS: list[Column] = [
    ("TENANT", lambda x: x.tenant),
    ("SOURCE", lambda x: x.source),
    ("RECORDS", lambda x: x.records),
    ("STATES", lambda x: ",".join(f"{k}={v}" for k, v in sorted(x.states.items()))),
    ("DUPLICATES", lambda x: x.duplicates),
    (
        "DUPLICATE %",
        lambda x: None if x.duplicate_ratio is None else f"{x.duplicate_ratio * 100:.1f}",
    ),
    ("ACK P50 MS", lambda x: x.ack_p50_ms),
    ("ACK P99 MS", lambda x: x.ack_p99_ms),
    ("ENRICHMENT BACKLOG", lambda x: _backlog(x.enrichment_backlog)),
    ("DELIVERY BACKLOG", lambda x: _backlog(x.delivery_backlog)),
]


def stats(
    since: Annotated[
        datetime | None,
        typer.Option(help="From (ISO 8601, UTC if no zone); default: 24 hours before --until."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Until, excluded (ISO 8601); default: now.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant slug.")] = None,
    source: Annotated[str | None, typer.Option(help="ATS source.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Records by state, duplicate ratio and ack latency per tenant and source over a window,
    and the enrichment and delivery backlog now."""
    from app.admin import schemas
    from app.cli.admin import utc

    found = admin(
        lambda api: api.get(
            "/stats",
            schemas.Stats,
            since=utc(since),
            until=utc(until),
            tenant=tenant,
            source=source,
        )
    )
    if as_json:
        print_json(found)
        return
    table(found.sources, _COLUMNS)
    typer.echo(f"from {timestamp(found.since)} to {timestamp(found.until)}", err=True)
