"""``hirehook dead-letters``: records enrichment or delivery gave up on."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.client import admin
from app.cli.output import Column, nothing_done, print_json, print_list

if TYPE_CHECKING:
    from app.admin.schemas import ActionResult, DeadLetterAction

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


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


def _action(
    ids: list[int] | None,
    kind: Kind | None,
    stage: Stage | None,
    tenant: str | None,
    source: str | None,
    everything: bool,
    note: str | None,
    *,
    action: str,
    reason: str | None = None,
) -> Any:
    from app.admin import schemas

    if not ids and not everything and not (kind or stage or tenant or source or reason):
        raise typer.BadParameter(f"name the letters to {action}: ids, filters, or --all")
    return schemas.DeadLetterAction(
        ids=ids or [],
        kind=kind.value if kind else None,
        stage=stage.value if stage else None,
        tenant=tenant,
        source=source,
        all=everything,
        note=note,
        reason=reason,
    )


def _resolution(letter: Any) -> str:
    if not letter.resolution:
        return "open"
    return f"{letter.resolution} ({letter.note})" if letter.note else letter.resolution


_COLUMNS: list[Column] = [
    ("ID", lambda x: x.id),
    ("CREATED", lambda x: x.created_at),
    ("TENANT", lambda x: x.tenant),
    ("SOURCE", lambda x: x.source),
    ("STAGE", lambda x: x.stage),
    ("KIND", lambda x: x.kind),
    ("REASON", lambda x: x.reason),
    ("ATTEMPTS", lambda x: x.attempts),
    ("RECORD", lambda x: x.record_id),
    ("STATE", _resolution),
    ("DETAIL", lambda x: x.detail),
]


@dead_cli.command("list")
def dead_letters_list(
    kind: KindOption = None,
    stage: StageOption = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    include_resolved: Annotated[
        bool, typer.Option("--resolved", help="Include retried and discarded letters.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List dead letters, oldest first."""
    from app.admin import schemas

    letters = admin(
        lambda api: api.get(
            "/dead-letters",
            list[schemas.DeadLetterView],
            kind=kind,
            stage=stage,
            tenant=tenant,
            source=source,
            resolved=include_resolved,
        )
    )
    print_list(letters, as_json=as_json, columns=_COLUMNS)
    if not as_json:
        typer.echo(f"{len(letters)} dead letter(s)", err=True)


def _act(verb: str, done: str, action: DeadLetterAction, *, as_json: bool) -> ActionResult:
    """POST ``action`` to the letters' ``verb`` operation and print how many it took; exits 1
    when it matched no open letter."""
    from app.admin import schemas

    result = admin(lambda api: api.post(f"/dead-letters/{verb}", schemas.ActionResult, action))
    if as_json:
        print_json(result)
    else:
        typer.echo(f"{result.count} dead letter(s) {done}")
    if result.count == 0:
        raise nothing_done(f"no open dead letter matched; nothing was {done}")
    return result


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
    as_json: JsonOption = False,
) -> None:
    """Start the stage over for these letters, once their cause is fixed; exits 1 when none
    was open or a quarantined event still does not fit."""

    action = _action(
        ids, kind, stage, tenant, source, everything, note, action="retry", reason=reason
    )
    result = _act("retry", "retried", action, as_json=as_json)
    if result.still_failing:
        raise nothing_done(
            f"{result.still_failing} quarantined record(s) still do not fit and are dead "
            "letters again: fix the connection's payload fields (`hirehook records show "
            "<record>` says which are missing) before retrying"
        )


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
    as_json: JsonOption = False,
) -> None:
    """Give up on these letters for good (--note says why); exits 1 when none was open."""

    action = _action(
        ids, kind, stage, tenant, source, everything, note, action="discard", reason=reason
    )
    _act("discard", "discarded", action, as_json=as_json)


_GROUP_COLUMNS: list[Column] = [
    ("KIND", lambda g: g.kind),
    ("REASON", lambda g: g.reason),
    ("STAGE", lambda g: g.stage),
    ("COUNT", lambda g: g.count),
    ("TENANTS", lambda g: ",".join(g.tenants)),
    ("SOURCES", lambda g: ",".join(g.sources)),
    ("OLDEST", lambda g: g.oldest),
]


@dead_cli.command("groups")
def dead_letters_groups(
    tenant: TenantOption = None,
    source: SourceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open dead letters by cause, reason and stage, with counts. Retry a group with
    ``retry --kind K --reason R --stage S`` (and the same --tenant and --source)."""
    from app.admin import schemas

    groups = admin(
        lambda api: api.get(
            "/dead-letters/groups", list[schemas.DeadLetterGroup], tenant=tenant, source=source
        )
    )
    print_list(groups, as_json=as_json, columns=_GROUP_COLUMNS)
    if not as_json:
        typer.echo(
            f"{sum(g.count for g in groups)} open dead letter(s) in {len(groups)} group(s)",
            err=True,
        )
