"""``hirehook erase`` and ``hirehook maintain``: personal data (docs/privacy.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app.cli.client import admin
from app.cli.common import load_settings, with_services
from app.cli.output import or_dash, print_json, timestamp


def erase(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    source: Annotated[str, typer.Option(help="ATS source (smartrecruiters, icims, ...).")],
    candidate: Annotated[str, typer.Option(help="The ATS's person/candidate id.")],
    email: Annotated[
        str | None,
        typer.Option(
            help="The candidate's e-mail address: records of the tenant whose bodies hold it "
            "are erased too (default: the address the stored candidate has, if any)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Erase everything stored about one candidate and write the audit row (it names the admin
    key, or cli:<user> on a host without --url)."""
    from app.admin import schemas

    request = schemas.ErasureRequest(
        tenant=tenant, source=source, candidate_id=candidate, email=email
    )
    report = admin(lambda api: api.post("/erasures", schemas.ErasureView, request))
    if as_json:
        print_json(
            {
                "audit_id": report.audit_id,
                "erased_at": report.erased_at,
                "actor": report.actor,
                "counts": report.counts,
            }
        )
        return
    counts = ", ".join(f"{table}={n}" for table, n in sorted(report.counts.items()))
    typer.echo(
        f"erased; audit {report.audit_id} at {timestamp(report.erased_at)} by {report.actor}: "
        f"{counts or '-'}"
    )


def maintain(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Run the privacy maintenance once (partitions, retention purge, clean-up), as the
    worker's cron job does."""
    import dataclasses

    from app.admin.privacy import maintain as run

    settings = load_settings()
    report = asyncio.run(with_services(settings, lambda s: run(s.engine, settings)))
    if as_json:
        print_json(report)
        return
    for name, value in dataclasses.asdict(report).items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        typer.echo(f"{name}: {or_dash(shown)}")
