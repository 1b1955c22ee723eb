"""``hirehook admin-keys``, ``records`` and ``connections``: the admin API's operations from the
command line. ``records`` and ``connections`` are requests to the admin API
(:mod:`app.cli.client`: a deployment's with ``--url``, else in process); ``admin-keys`` works on
the database directly, as the keys that open the API come from there. ``--json`` prints what
the API answers, for scripts (a list as ``{"items": [...], "next_cursor": ...}``, see
:mod:`app.cli.output`); secrets are read from a file or stdin, never from arguments
(which other users of the machine can see in the process list and shell history)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer

from app.cli.client import admin
from app.cli.common import load_settings, with_services
from app.cli.output import Column, nothing_done, or_dash, print_json, print_list, timestamp

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


def run(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(services)`` on the database directly (``admin-keys`` only: every other
    operator command goes through the admin API, :func:`app.cli.client.admin`); an operator's
    mistake (AppError) is printed, exit status 1."""
    from app.platform.errors import AppError

    try:
        result: T = asyncio.run(with_services(load_settings(), action))
    except AppError as exc:
        typer.echo(f"error: {exc.user_message}", err=True)
        raise typer.Exit(1) from exc
    return result


def emit(value: Any, *, as_json: bool, line: Callable[[Any], str]) -> None:
    """Print one model: JSON, or its line."""
    if as_json:
        print_json(value)
        return
    typer.echo(line(value))


def _valid(build: Callable[[], T]) -> T:
    """A model built from options; a value it refuses is a usage error that names the valid
    ones (a misspelt state would otherwise match nothing, silently)."""
    import pydantic

    from app.cli.errors import describe

    try:
        return build()
    except pydantic.ValidationError as exc:
        raise typer.BadParameter(describe(exc)) from exc


def json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object given on the command line or in a file."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


def read_secrets(path: Path | None) -> dict[str, Any]:
    """Secrets as a JSON object from ``path``, or from stdin when it is ``-``."""
    if path is None:
        return {}
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return json_object(text, "the secrets")


SecretsOption = Annotated[
    Path | None,
    typer.Option(
        "--secrets-file",
        help="A JSON object of secrets; '-' reads it from stdin. Never put secrets in arguments.",
    ),
]
OptionsOption = Annotated[str | None, typer.Option("--options", help="Options, a JSON object.")]


# --- admin keys -------------------------------------------------------------------------------

keys_cli = typer.Typer(help="Keys to the admin API (/v1/admin).", no_args_is_help=True)


def _key_state(key: Any) -> str:
    return f"revoked {timestamp(key.revoked_at)}" if key.revoked_at else "active"


_KEY_COLUMNS: list[Column] = [
    ("ID", lambda k: k.id),
    ("NAME", lambda k: k.name),
    ("PREFIX", lambda k: f"{k.prefix}..."),
    ("STATE", _key_state),
    ("LAST USED", lambda k: k.last_used_at),
]


def _key_line(key: Any) -> str:
    used = timestamp(key.last_used_at) if key.last_used_at else "never used"
    return f"{key.id}\t{key.name}\t{key.prefix}...\t{_key_state(key)}\t{used}"


@keys_cli.command("create")
def keys_create(name: str, as_json: JsonOption = False) -> None:
    """Create a key; it is shown once, now, and only its hash is kept."""
    from app.admin import keys

    created = run(lambda s: keys.create(s.engine, name))
    if as_json:
        emit(created, as_json=True, line=str)
        return
    typer.echo(created.key)
    typer.echo(
        f"admin key {created.id} ({name}) created; store it now, it cannot be shown again",
        err=True,
    )


@keys_cli.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """List keys (never the keys themselves)."""
    from app.admin import keys

    print_list(run(lambda s: keys.list_keys(s.engine)), as_json=as_json, columns=_KEY_COLUMNS)


@keys_cli.command("revoke")
def keys_revoke(key_id: int, as_json: JsonOption = False) -> None:
    """Revoke a key: requests carrying it are refused from now on."""
    from app.admin import keys

    emit(run(lambda s: keys.revoke(s.engine, key_id)), as_json=as_json, line=_key_line)


# --- connections ------------------------------------------------------------------------------

connections_cli = typer.Typer(
    help="Connections of tenants to ATSs (secrets are write-only).", no_args_is_help=True
)


def connection_line(c: Any) -> str:
    """One connection on one line (secret names and fingerprint only)."""
    state = "enabled" if c.enabled else "disabled"
    names = ",".join(c.secrets.names) or "-"
    return (
        f"{c.id}\t{c.tenant}\t{c.source}\t{c.name}\t{c.account or '-'}\t{state}\t"
        f"secrets={names}\tfingerprint={c.secrets.fingerprint}"
    )


CONNECTION_COLUMNS: list[Column] = [
    ("ID", lambda c: c.id),
    ("TENANT", lambda c: c.tenant),
    ("SOURCE", lambda c: c.source),
    ("NAME", lambda c: c.name),
    ("ACCOUNT", lambda c: c.account),
    ("STATE", lambda c: "enabled" if c.enabled else "disabled"),
    ("SECRETS", lambda c: ",".join(c.secrets.names)),
    ("FINGERPRINT", lambda c: c.secrets.fingerprint),
]


@connections_cli.command("list")
def connections_list(
    tenant: Annotated[str | None, typer.Option(help="Tenant slug.")] = None,
    source: Annotated[str | None, typer.Option(help="ATS source.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List connections."""
    from app.admin import schemas

    found = admin(
        lambda api: api.get(
            "/connections", list[schemas.ConnectionView], tenant=tenant, source=source
        )
    )
    print_list(found, as_json=as_json, columns=CONNECTION_COLUMNS)


@connections_cli.command("show")
def connections_show(connection_id: int, as_json: JsonOption = False) -> None:
    """Show one connection."""
    from app.admin import schemas

    found = admin(lambda api: api.get(f"/connections/{connection_id}", schemas.ConnectionView))
    emit(found, as_json=as_json, line=connection_line)


@connections_cli.command("create")
def connections_create(
    tenant: str,
    source: str,
    name: Annotated[str, typer.Option(help="Name among the tenant's connections.")] = "default",
    account: Annotated[str | None, typer.Option(help="The ATS's account id.")] = None,
    options: OptionsOption = None,
    secrets_file: SecretsOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a connection; its source checks options and secrets first."""
    from app.admin import schemas

    spec = schemas.ConnectionCreate(
        tenant=tenant,
        source=source,
        name=name,
        account=account,
        enabled=not disabled,
        options=json_object(options, "--options") if options else {},
        secrets=read_secrets(secrets_file),
    )
    emit(
        admin(lambda api: api.post("/connections", schemas.ConnectionView, spec)),
        as_json=as_json,
        line=connection_line,
    )


@connections_cli.command("update")
def connections_update(
    connection_id: int,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    account: Annotated[str | None, typer.Option(help="A new ATS account id.")] = None,
    options: Annotated[
        str | None, typer.Option("--options", help="New options (replace all), a JSON object.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a connection's name, account or options."""
    from app.admin import schemas

    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if account is not None:
        changes["account"] = account
    if options is not None:
        changes["options"] = json_object(options, "--options")
    spec = schemas.ConnectionUpdate(**changes)
    emit(
        admin(lambda api: api.patch(f"/connections/{connection_id}", schemas.ConnectionView, spec)),
        as_json=as_json,
        line=connection_line,
    )


def _set_connection(connection_id: int, enabled: bool, as_json: bool) -> None:
    from app.admin import schemas

    action = "enable" if enabled else "disable"
    emit(
        admin(
            lambda api: api.post(f"/connections/{connection_id}/{action}", schemas.ConnectionView)
        ),
        as_json=as_json,
        line=connection_line,
    )


@connections_cli.command("disable")
def connections_disable(connection_id: int, as_json: JsonOption = False) -> None:
    """Disable a connection: its senders are refused (401)."""
    _set_connection(connection_id, False, as_json)


@connections_cli.command("enable")
def connections_enable(connection_id: int, as_json: JsonOption = False) -> None:
    """Enable a connection."""
    _set_connection(connection_id, True, as_json)


@connections_cli.command("rotate")
def connections_rotate(
    connection_id: int,
    secrets_file: Annotated[
        Path, typer.Option("--secrets-file", help="The new secrets, a JSON object; '-': stdin.")
    ],
    merge: Annotated[
        bool, typer.Option("--merge", help="Replace only the secrets given, keep the others.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Replace a connection's secrets."""
    from app.admin import schemas

    spec = schemas.SecretsRotate(secrets=read_secrets(secrets_file), merge=merge)
    emit(
        admin(
            lambda api: api.put(
                f"/connections/{connection_id}/secrets", schemas.ConnectionView, spec
            )
        ),
        as_json=as_json,
        line=connection_line,
    )


def _payload_fields(pairs: list[str]) -> dict[str, list[str]]:
    """``field=name`` pairs as ``{field: [name, ...]}``; ``field=`` goes back to the guesses."""
    fields: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, wire = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r}: write FIELD=NAME, e.g. position_id=Id")
        names = fields.setdefault(name.strip(), [])
        if wire.strip():
            names.append(wire.strip())
    return fields


@connections_cli.command("set-payload-fields")
def connections_set_payload_fields(
    connection_id: int,
    field: Annotated[
        list[str],
        typer.Option(
            "--field",
            help="FIELD=NAME: the body's NAME for our FIELD (event, candidate_id, position_id, "
            "...); repeat for more names or fields; FIELD= goes back to the built-in guesses.",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Name the body's fields (options.payload_fields) and parse the connection's quarantined
    records again; those that now fit go on to enrichment and delivery."""
    from app.admin import schemas

    spec = schemas.PayloadFieldsSet(payload_fields=_payload_fields(field))
    emit(
        admin(
            lambda api: api.post(
                f"/connections/{connection_id}/payload-fields", schemas.PayloadFieldsResult, spec
            )
        ),
        as_json=as_json,
        line=lambda r: (
            f"{connection_line(r.connection)}\n"
            f"{r.reparsed} quarantined record(s) parsed again and released, "
            f"{r.still_quarantined} still quarantined"
        ),
    )


# --- records ----------------------------------------------------------------------------------

records_cli = typer.Typer(help="Received records: find, inspect, replay.", no_args_is_help=True)

TenantOption = Annotated[str | None, typer.Option(help="Tenant slug.")]
SourceOption = Annotated[str | None, typer.Option(help="ATS source.")]
TypeOption = Annotated[str | None, typer.Option("--event-type", help="The event's type.")]
StateOption = Annotated[
    str | None,
    typer.Option(
        help="received, processed (enriched, not delivered), delivered, dead_letter "
        "(enrichment or delivery gave up), quarantined, discarded."
    ),
]
FromOption = Annotated[
    datetime | None, typer.Option("--from", help="Received at or after (ISO 8601).")
]
ToOption = Annotated[datetime | None, typer.Option("--to", help="Received before (ISO 8601).")]
PersonOption = Annotated[str | None, typer.Option(help="The person (candidate) id it names.")]
JobOption = Annotated[str | None, typer.Option(help="The job id it names.")]
ApplicationOption = Annotated[str | None, typer.Option(help="The application id it names.")]


def _query(
    tenant: str | None,
    source: str | None,
    event_type: str | None,
    state: str | None,
    received_from: datetime | None,
    received_to: datetime | None,
    person: str | None,
    job: str | None,
    application: str | None,
) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "source": source,
        "event_type": event_type,
        "state": state,
        # A time without a zone is read as UTC, as everything here is stored.
        "received_from": utc(received_from),
        "received_to": utc(received_to),
        "person": person,
        "job": job,
        "application": application,
    }


def utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _subjects(r: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(r.subjects.items())) or "-"


RECORD_COLUMNS: list[Column] = [
    ("ID", lambda r: r.id),
    ("RECEIVED", lambda r: r.received_at),
    ("TENANT", lambda r: r.tenant),
    ("SOURCE", lambda r: r.source),
    ("EVENT TYPE", lambda r: r.event_type),
    ("STATE", lambda r: r.state),
    ("SUBJECTS", _subjects),
]


def record_line(r: Any) -> str:
    """One record on one line."""
    return (
        f"{r.id}\t{timestamp(r.received_at)}\t{r.tenant}\t{r.source}\t{r.event_type}\t"
        f"{r.state}\t{_subjects(r)}"
    )


@records_cli.command("list")
def records_list(
    tenant: TenantOption = None,
    source: SourceOption = None,
    event_type: TypeOption = None,
    state: StateOption = None,
    received_from: FromOption = None,
    received_to: ToOption = None,
    person: PersonOption = None,
    job: JobOption = None,
    application: ApplicationOption = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Records per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Where the previous page ended.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List records, newest first (one page; the next page's cursor is printed on stderr, or
    in --json's next_cursor)."""
    from app.admin import schemas

    fields = _query(
        tenant, source, event_type, state, received_from, received_to, person, job, application
    )
    q = _valid(lambda: schemas.RecordQuery(**fields))
    page = admin(
        lambda api: api.get("/records", schemas.RecordPage, q=q, limit=limit, cursor=cursor)
    )
    print_list(page.records, as_json=as_json, columns=RECORD_COLUMNS, next_cursor=page.next_cursor)


@records_cli.command("show")
def records_show(record_id: uuid.UUID, as_json: JsonOption = False) -> None:
    """Show one record's whole story."""
    from app.admin import schemas

    detail = admin(lambda api: api.get(f"/records/{record_id}", schemas.RecordDetail))
    if as_json:
        emit(detail, as_json=True, line=str)
        return
    typer.echo(record_line(detail))
    ack = "-" if detail.ack_ms is None else f"{detail.ack_ms} ms"
    typer.echo(f"dedupe key: {detail.dedupe_key}   ack: {ack}")
    for name, value in sorted(detail.headers.items()):
        typer.echo(f"  {name}: {value}")
    body = detail.raw_body.text if detail.raw_body.text is not None else detail.raw_body.base64
    typer.echo(f"body ({detail.raw_body.size} bytes): {body}")
    if detail.answer is not None:
        typer.echo(f"answered {detail.answer.status}: {or_dash(detail.answer.body.text)}")
    # A stage that gave up is finished too; its open dead letter says so, not "done".
    gave_up = {d.stage for d in detail.dead_letters if d.resolved_at is None}
    for name, work in (("enrichment", detail.outbox), ("delivery", detail.delivery)):
        if work is not None:
            ended = "gave up" if name in gave_up else "done"
            done = f"{ended} {timestamp(work.done_at)}" if work.done_at else "pending"
            typer.echo(
                f"{name}: {done}, attempts={work.attempts}, error={or_dash(work.last_error)}"
            )
    for n, attempt in enumerate(detail.attempts, 1):
        typer.echo(
            f"attempt {n}: {or_dash(attempt.status)} at {timestamp(attempt.attempted_at)}"
            f" in {attempt.latency_ms} ms: {attempt.error or 'delivered'}"
            f"   answer: {or_dash(attempt.answer)}"
        )
    for row in detail.written:
        typer.echo(
            f"wrote {row.kind} {row.external_id} version {or_dash(row.delivered_version)}"
            f" (now {row.version or 'gone'})"
        )
    for letter in detail.dead_letters:
        typer.echo(
            f"dead letter {letter.id}: {letter.stage} {letter.kind} {letter.reason}: "
            f"{letter.detail} [{letter.resolution or 'open'}] {letter.note or ''}"
        )
    if detail.quarantine is not None:
        _quarantine_lines(detail.quarantine)
    for replay in detail.replays:
        typer.echo(f"replayed by {replay.actor} at {timestamp(replay.created_at)}")


@records_cli.command("replay")
def records_replay(
    record_ids: Annotated[list[uuid.UUID] | None, typer.Argument(help="Record ids.")] = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    event_type: TypeOption = None,
    state: StateOption = None,
    received_from: FromOption = None,
    received_to: ToOption = None,
    person: PersonOption = None,
    job: JobOption = None,
    application: ApplicationOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the records that would be replayed.")
    ] = False,
    confirm: Annotated[
        int | None,
        typer.Option(
            "--confirm",
            help="The most records to replay (the --dry-run count); needed when the filters "
            "match more than 1,000.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run enrichment (and failed deliveries) again for these records or every match of the
    filters; an acknowledged delivery is never sent twice. Filters matching more than 1,000
    records need --confirm with the count --dry-run gives."""
    from app.admin import schemas

    query = _query(
        tenant, source, event_type, state, received_from, received_to, person, job, application
    )
    filters = {k: v for k, v in query.items() if v is not None}
    # Only what was given: naming ids and filters together is refused, not guessed at.
    named: dict[str, Any] = {"record_ids": list(record_ids)} if record_ids else {}
    request = _valid(
        lambda: schemas.ReplayRequest(
            **named,
            filters=schemas.ReplayFilters(**filters) if filters else None,
            dry_run=dry_run,
            confirm=confirm,
        )
    )
    # The replay log names the admin key (in process: cli:<user>).
    result = admin(lambda api: api.post("/replays", schemas.ReplayResult, request))
    emit(
        result,
        as_json=as_json,
        line=lambda r: (
            f"dry run: {r.matched} record(s) would be replayed"
            if r.dry_run
            else f"replay {r.id}: {r.matched} record(s) matched, {r.enrichments} enrichment(s) "
            f"and {r.deliveries} failed deliveries run again, {r.skipped_erased} erased or "
            "purged record(s) skipped"
        ),
    )
    if not result.dry_run and result.enrichments + result.deliveries == 0:
        raise nothing_done(
            "nothing was replayed: the matching records are quarantined, of event types this "
            "version does not model, or erased (`hirehook records show` tells which)"
        )


def _quarantine_lines(q: Any) -> None:
    """What a quarantined record lacks and how to map it (``hirehook records show``)."""
    typer.echo("quarantined, with the connection's current options:")
    for problem in q.problems:
        typer.echo(f"  {problem}")
    for name, tried in q.missing.items():
        typer.echo(f"  missing {name}; names tried: {', '.join(tried)}")
    typer.echo(f"  names in the body: {', '.join(q.body_fields) or '-'}")
    if q.missing:
        example = " ".join(f"--field {name}=<name in the body>" for name in q.missing)
        typer.echo(
            f"  map them: hirehook connections set-payload-fields {q.connection_id} {example}"
        )
