"""``hirehook dead-letters``: records enrichment or delivery gave up on."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

import typer

from app.cli.common import load_settings, with_services
from app.schemas.parsed import Reparse


def reparsers() -> dict[str, Reparse]:
    """Each source's parser, for quarantined events (polled records of any source included)."""
    from app.poller.items import with_polled
    from app.sources import REGISTRY

    return {name: with_polled(s.reparse) for name, s in REGISTRY.items()}


dead_cli = typer.Typer(
    help="Dead letters: records enrichment or delivery gave up on.", no_args_is_help=True
)


class Kind(StrEnum):
    """Who has to act: the tenant (configuration) or the operators (pipeline)."""

    configuration = "configuration"
    pipeline = "pipeline"


class Stage(StrEnum):
    """The stage that gave up."""

    intake = "intake"
    enrichment = "enrichment"
    delivery = "delivery"


KindOption = Annotated[Kind | None, typer.Option(help="configuration or pipeline.")]
StageOption = Annotated[Stage | None, typer.Option(help="intake, enrichment or delivery.")]
TenantOption = Annotated[str | None, typer.Option(help="Tenant slug.")]
SourceOption = Annotated[str | None, typer.Option(help="ATS source (hrmanager, ...).")]
ReasonOption = Annotated[
    str | None, typer.Option(help="One reason of a cause (see `dead-letters groups`).")
]
IdsArgument = Annotated[list[int] | None, typer.Argument(help="Dead-letter ids.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every open letter matching the filters.")]
NoteOption = Annotated[
    str | None, typer.Option(help="Why (kept with the letter, shown by list --resolved).")
]


def _filters(
    ids: list[int] | None,
    kind: Kind | None,
    stage: Stage | None,
    tenant: str | None,
    source: str | None,
    everything: bool,
    *,
    action: str,
    reason: str | None = None,
) -> Any:
    from app.workers.dead_letters import Filters

    if not ids and not everything and not (kind or stage or tenant or source or reason):
        raise typer.BadParameter(f"name the letters to {action}: ids, filters, or --all")
    return Filters(
        ids=ids or (),
        kind=kind.value if kind else None,
        stage=stage.value if stage else None,
        tenant=tenant,
        source=source,
        reason=reason,
    )


@dead_cli.command("list")
def dead_letters_list(
    kind: KindOption = None,
    stage: StageOption = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    include_resolved: Annotated[
        bool, typer.Option("--resolved", help="Include retried and discarded letters.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters, oldest first."""
    import dataclasses

    import orjson

    from app.workers import dead_letters

    filters = dead_letters.Filters(
        kind=kind.value if kind else None,
        stage=stage.value if stage else None,
        tenant=tenant,
        source=source,
    )
    letters = asyncio.run(
        with_services(
            load_settings(),
            lambda s: dead_letters.list_letters(
                s.engine, filters, include_resolved=include_resolved
            ),
        )
    )
    for letter in letters:
        if as_json:
            typer.echo(orjson.dumps(dataclasses.asdict(letter)).decode())
            continue
        state = f" [{letter.resolution}]" if letter.resolution else ""
        if letter.note:
            state += f" ({letter.note})"
        typer.echo(
            f"{letter.id}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\t{letter.tenant}\t"
            f"{letter.source}\t{letter.stage}\t{letter.kind}\t{letter.reason}\t"
            f"attempts={letter.attempts}\trecord={letter.record_id}\t{letter.detail}{state}"
        )
    if not as_json:
        typer.echo(f"{len(letters)} dead letter(s)", err=True)


@dead_cli.command("retry")
def dead_letters_retry(
    ids: IdsArgument = None,
    kind: KindOption = None,
    stage: StageOption = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    reason: ReasonOption = None,
    everything: AllOption = False,
    note: NoteOption = None,
) -> None:
    """Start the stage over for these letters, once their cause is fixed."""
    from app.workers import dead_letters

    filters = _filters(ids, kind, stage, tenant, source, everything, action="retry", reason=reason)
    count = asyncio.run(
        with_services(
            load_settings(),
            lambda s: dead_letters.retry(s.engine, s.queue, filters, reparsers(), note=note),
        )
    )
    typer.echo(f"{count} dead letter(s) retried")


@dead_cli.command("discard")
def dead_letters_discard(
    ids: IdsArgument = None,
    kind: KindOption = None,
    stage: StageOption = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    reason: ReasonOption = None,
    everything: AllOption = False,
    note: NoteOption = None,
) -> None:
    """Give up on these letters for good (--note says why)."""
    from app.workers import dead_letters

    filters = _filters(
        ids, kind, stage, tenant, source, everything, action="discard", reason=reason
    )
    count = asyncio.run(
        with_services(load_settings(), lambda s: dead_letters.discard(s.engine, filters, note=note))
    )
    typer.echo(f"{count} dead letter(s) discarded")


@dead_cli.command("groups")
def dead_letters_groups(
    tenant: TenantOption = None,
    source: SourceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Open dead letters by cause, reason and stage, with counts. Retry a group with
    ``retry --kind K --reason R --stage S`` (and the same --tenant and --source)."""
    import orjson

    from app.admin import service

    groups = asyncio.run(
        with_services(
            load_settings(),
            lambda s: service.dead_letter_groups(s, tenant=tenant, source=source),
        )
    )
    if as_json:
        payload = [g.model_dump(mode="json") for g in groups]
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    for g in groups:
        typer.echo(
            f"{g.kind}\t{g.reason}\t{g.stage}\t{g.count}\t"
            f"tenants={','.join(g.tenants)}\tsources={','.join(g.sources)}\t"
            f"oldest={g.oldest:%Y-%m-%d %H:%M:%S}"
        )
    typer.echo(
        f"{sum(g.count for g in groups)} open dead letter(s) in {len(groups)} group(s)", err=True
    )
