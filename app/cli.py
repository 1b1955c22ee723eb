"""The ``hirehook`` command: dev, api, worker, migrate, tenants, keygen, send."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from app.settings import Settings

if TYPE_CHECKING:
    from app.senders import IcimsCredentials

cli = typer.Typer(
    help="Hirehook: receive, verify, deduplicate and enrich ATS events.", no_args_is_help=True
)
tenants_cli = typer.Typer(help="Tenants and connections.", no_args_is_help=True)
cli.add_typer(tenants_cli, name="tenants")

DEMO_TENANTS = Path(__file__).resolve().parent.parent / "demo" / "tenants.toml"


def _settings() -> Settings:
    from app.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return settings


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    settings = _settings()
    settings.database_dsn  # noqa: B018 - fail fast, before uvicorn starts, if unset
    settings.redis_dsn  # noqa: B018
    if settings.tenants_file is not None:
        asyncio.run(_load_tenants(settings, settings.tenants_file))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or settings.api_workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_keep_alive=30,
    )


@cli.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
) -> None:
    """Run an arq worker (any number may run against one Redis and one PostgreSQL)."""
    import uvloop

    from app.workers.settings import create_worker

    settings = _settings()
    # arq runs on the loop current when the worker is built; uvloop (as the API uses) cuts
    # the per-call cost of the many small Redis, PostgreSQL and HTTP exchanges a job makes.
    asyncio.set_event_loop(uvloop.new_event_loop())
    create_worker(settings, burst=burst).run()


@cli.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    down: Annotated[bool, typer.Option(help="Downgrade to --revision instead.")] = False,
) -> None:
    """Apply (or revert) database migrations."""
    from app import migrate as migrations

    settings = _settings()
    if down:
        migrations.downgrade(settings.database_dsn, revision)
    else:
        migrations.upgrade(settings.database_dsn, revision)


@cli.command()
def keygen() -> None:
    """Print a new random HIREHOOK_SECRET_KEY."""
    from app.crypto import generate_key

    typer.echo(generate_key())


async def _load_tenants(settings: Settings, path: Path) -> int:
    from app.crypto import Cipher
    from app.db import create_engine, create_sessionmaker
    from app.tenants import apply_tenants, read_tenants_file

    engine = create_engine(settings)
    try:
        return await apply_tenants(
            read_tenants_file(path),
            sessions=create_sessionmaker(engine),
            cipher=Cipher(settings.secret_keys),
        )
    finally:
        await engine.dispose()


@tenants_cli.command("load")
def tenants_load(path: Path) -> None:
    """Create or update the tenants and connections declared in a TOML file."""
    written = asyncio.run(_load_tenants(_settings(), path))
    typer.echo(f"{written} connection(s) written from {path}")


@cli.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where embedded servers keep data.")] = Path(
        ".hirehook"
    ),
) -> None:
    """Run API + worker; starts an embedded PostgreSQL and Redis when no URLs are set."""
    from app import migrate as migrations
    from app.embedded import EmbeddedPostgres, EmbeddedRedis, start_missing
    from app.logs import configure

    configure("INFO", "console")
    # A service manager stops us with SIGTERM, and a shell may start us with SIGINT ignored;
    # either way, clean up exactly as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    env = dict(os.environ)
    env.setdefault("HIREHOOK_ENVIRONMENT", "development")
    env.setdefault("HIREHOOK_LOG_FORMAT", "console")
    env.setdefault("HIREHOOK_TENANTS_FILE", str(DEMO_TENANTS))
    env["HIREHOOK_API_PORT"] = str(port)
    env.setdefault("HIREHOOK_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    children: list[subprocess.Popen[bytes]] = []
    try:
        started = start_missing(env, data_dir)
        os.environ.update(env)
        settings = Settings()
        migrations.upgrade(settings.database_dsn)
        exe = [sys.executable, "-m", "app.cli"]
        children.append(subprocess.Popen([*exe, "api"], env=env))  # noqa: S603
        children.append(subprocess.Popen([*exe, "worker"], env=env))  # noqa: S603
        _wait_http(f"http://127.0.0.1:{port}/health/live", 30)
        base = f"http://127.0.0.1:{port}"
        typer.echo(
            "\nHirehook is running.\n"
            f"  API docs:   {base}/docs\n"
            f"  Readiness:  {base}/health/ready\n"
            f"  PostgreSQL: {mask_password(env['HIREHOOK_DATABASE_URL'])}\n"
            f"  Redis:      {mask_password(env['HIREHOOK_REDIS_URL'])}\n\n"
            "Send signed demo events (in another terminal):\n"
            f"  .venv/bin/hirehook send keldair --url {base}\n"
            f"  .venv/bin/hirehook send icims --url {base} --auth hmac\n\n"
            "Ctrl-C stops everything.\n"
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("\nstopping...")
    finally:
        # A second Ctrl-C or SIGTERM must not abandon the servers half-stopped; every wait
        # below is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(started):
            server.stop()


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_http(url: str, timeout_s: float) -> None:
    import httpx

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    typer.echo("the API did not come up; see the log above", err=True)
    raise typer.Exit(1)


send_cli = typer.Typer(
    help="Send correctly signed sample events to a running instance.", no_args_is_help=True
)
cli.add_typer(send_cli, name="send")


@send_cli.command("keldair")
def send_keldair(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    secret: Annotated[
        str | None, typer.Option(help="whsec_ secret; default: the demo tenants file's.")
    ] = None,
    event_type: Annotated[str, typer.Option("--type", help="Event type.")] = "applicant.hired",
    event_id: Annotated[
        str | None, typer.Option(help="Event id (repeat it to see dedupe).")
    ] = None,
    gzip_body: Annotated[bool, typer.Option("--gzip", help="Send gzip'd.")] = False,
) -> None:
    """Send one KeldairHR event signed with Standard Webhooks."""
    from app.senders import keldair_sample, send_standard_webhook
    from app.tenants import read_tenants_file

    if secret is None:
        spec = read_tenants_file(DEMO_TENANTS)
        found = [
            c.secrets["signing_secrets"][0]
            for t in spec.tenant
            if t.slug == tenant
            for c in t.connection
            if c.source == "keldair"
        ]
        if not found:
            raise typer.BadParameter(f"no keldair secret for tenant {tenant!r}; pass --secret")
        secret = str(found[0])
    payload = keldair_sample(event_type, event_id)
    response = send_standard_webhook(
        f"{url.rstrip('/')}/v1/keldair/{tenant}/events", payload, secret, gzip_body=gzip_body
    )
    typer.echo(f"{response.status_code} {response.text}")


def _demo_icims_credentials(customer: str) -> IcimsCredentials:
    from app.senders import IcimsCredentials
    from app.tenants import read_tenants_file

    spec = read_tenants_file(DEMO_TENANTS)
    for tenant in spec.tenant:
        for conn in tenant.connection:
            if conn.source == "icims" and conn.account == customer:
                secrets, options = conn.secrets, conn.options
                return IcimsCredentials(
                    basic_username=secrets.get("basic_username"),
                    basic_password=secrets.get("basic_password"),
                    hmac_user=options.get("hmac_user", "hirehook-demo"),
                    hmac_secret=next(iter(secrets.get("hmac_secrets", [])), None),
                    oauth_client_id=options.get("oauth_client_id"),
                    oauth_client_secret=next(iter(secrets.get("oauth_client_secrets", [])), None),
                )
    raise typer.BadParameter(f"no iCIMS connection for customerId {customer!r} in {DEMO_TENANTS}")


@send_cli.command("icims")
def send_icims(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    auth: Annotated[
        str, typer.Option(help="basic, hmac or oauth (token fetched from /oauth/token first).")
    ] = "hmac",
    event_type: Annotated[
        str, typer.Option("--type", help="An iCIMS eventType, or 'all' for the six samples.")
    ] = "all",
    customer: Annotated[str, typer.Option(help="customerId.")] = "1234",
    system_id: Annotated[
        str | None, typer.Option(help="systemId (change it to see a new record, not a repeat).")
    ] = None,
    gzip_body: Annotated[bool, typer.Option("--gzip/--plain", help="Send gzip'd JSON.")] = True,
    username: Annotated[str | None, typer.Option(help="Basic username.")] = None,
    password: Annotated[str | None, typer.Option(help="Basic password.")] = None,
    hmac_user: Annotated[str | None, typer.Option(help="HMAC user=.")] = None,
    hmac_secret: Annotated[str | None, typer.Option(help="HMAC secret.")] = None,
    client_id: Annotated[str | None, typer.Option(help="OAuth client id.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="OAuth client secret.")] = None,
) -> None:
    """Send iCIMS sample events, gzip'd and authenticated as iCIMS does (default: demo secrets)."""
    import dataclasses

    import httpx

    from app.senders import (
        ICIMS_EVENT_TYPES,
        IcimsCredentials,
        fetch_icims_token,
        icims_sample,
    )
    from app.senders import send_icims as post_icims

    if auth not in ("basic", "hmac", "oauth"):
        raise typer.BadParameter("--auth is basic, hmac or oauth")
    types = list(ICIMS_EVENT_TYPES) if event_type == "all" else [event_type]
    given = {
        "basic_username": username,
        "basic_password": password,
        "hmac_user": hmac_user,
        "hmac_secret": hmac_secret,
        "oauth_client_id": client_id,
        "oauth_client_secret": client_secret,
    }
    if all(v is None for v in given.values()):
        credentials = _demo_icims_credentials(customer)
    else:
        credentials = dataclasses.replace(
            IcimsCredentials(), **{k: v for k, v in given.items() if v is not None}
        )
    token = None
    try:
        if auth == "oauth":
            if credentials.oauth_client_id is None or credentials.oauth_client_secret is None:
                raise typer.BadParameter("OAuth needs --client-id and --client-secret")
            token = fetch_icims_token(
                url, credentials.oauth_client_id, credentials.oauth_client_secret
            )
            typer.echo("token: fetched from /oauth/token")
        failed = 0
        for name in types:
            payload = icims_sample(name, customer, system_id=system_id)
            response = post_icims(
                url,
                payload,
                auth=auth,  # type: ignore[arg-type]
                credentials=credentials,
                gzip_body=gzip_body,
                token=token,
            )
            where = response.headers.get("location")
            repeat = (
                " (repeat: first answer replayed)"
                if "hirehook-duplicate" in response.headers
                else ""
            )
            detail = f"Location: {where}" if where else response.text
            typer.echo(f"{response.status_code} {name}: {detail}{repeat}")
            failed += response.status_code not in (200, 303)
    except (httpx.HTTPError, ValueError) as exc:
        typer.echo(f"failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if failed:
        raise typer.Exit(1)


dead_cli = typer.Typer(
    help="Dead letters: records enrichment or delivery gave up on.", no_args_is_help=True
)
cli.add_typer(dead_cli, name="dead-letters")


class Kind(StrEnum):
    """Who has to act: the tenant (configuration) or the operators (pipeline)."""

    configuration = "configuration"
    pipeline = "pipeline"


class Stage(StrEnum):
    """The stage that gave up."""

    enrichment = "enrichment"
    delivery = "delivery"


KindOption = Annotated[Kind | None, typer.Option(help="configuration or pipeline.")]
StageOption = Annotated[Stage | None, typer.Option(help="enrichment or delivery.")]
TenantOption = Annotated[str | None, typer.Option(help="Tenant slug.")]
SourceOption = Annotated[str | None, typer.Option(help="ATS source (hrmanager, ...).")]
IdsArgument = Annotated[list[int] | None, typer.Argument(help="Dead-letter ids.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every open letter matching the filters.")]


def _filters(
    ids: list[int] | None,
    kind: Kind | None,
    stage: Stage | None,
    tenant: str | None,
    source: str | None,
    everything: bool,
    *,
    action: str,
) -> Any:
    from app.workers.dead_letters import Filters

    if not ids and not everything and not (kind or stage or tenant or source):
        raise typer.BadParameter(f"name the letters to {action}: ids, filters, or --all")
    return Filters(
        ids=ids or (),
        kind=kind.value if kind else None,
        stage=stage.value if stage else None,
        tenant=tenant,
        source=source,
    )


async def _with_services(settings: Settings, action: Callable[[Any], Awaitable[Any]]) -> Any:
    from app.services import Services

    services = Services.create(settings)
    try:
        return await action(services)
    finally:
        await services.close()


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
        _with_services(
            _settings(),
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
    everything: AllOption = False,
) -> None:
    """Start the stage over for these letters, once their cause is fixed."""
    from app.workers import dead_letters

    filters = _filters(ids, kind, stage, tenant, source, everything, action="retry")
    count = asyncio.run(
        _with_services(_settings(), lambda s: dead_letters.retry(s.engine, s.queue, filters))
    )
    typer.echo(f"{count} dead letter(s) retried")


@dead_cli.command("discard")
def dead_letters_discard(
    ids: IdsArgument = None,
    kind: KindOption = None,
    stage: StageOption = None,
    tenant: TenantOption = None,
    source: SourceOption = None,
    everything: AllOption = False,
) -> None:
    """Give up on these letters for good."""
    from app.workers import dead_letters

    filters = _filters(ids, kind, stage, tenant, source, everything, action="discard")
    count = asyncio.run(
        _with_services(_settings(), lambda s: dead_letters.discard(s.engine, filters))
    )
    typer.echo(f"{count} dead letter(s) discarded")


def main() -> None:
    """Console entry point."""
    cli()


if __name__ == "__main__":
    main()
