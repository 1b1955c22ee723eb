"""Running the service: ``api``, ``worker``, ``migrate``, ``keygen``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app.cli.common import load_settings
from app.cli.tenants import load_tenants


def api(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
) -> None:
    """Run the HTTP API (uvicorn, with the connection limits of app/server.py)."""
    from app.server import run_api

    settings = load_settings(serving=True)
    settings.database_dsn  # noqa: B018 - fail fast, before uvicorn starts, if unset
    settings.redis_dsn  # noqa: B018
    if settings.tenants_file is not None:
        asyncio.run(load_tenants(settings, settings.tenants_file))
    run_api(settings, host=host, port=port, workers=workers)


def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (HIREHOOK_WORKER_METRICS_PORT)."),
    ] = None,
) -> None:
    """Run an arq worker (any number may run against one Redis and one PostgreSQL)."""
    import uvloop

    from app.workers.settings import create_worker

    settings = load_settings(serving=True)
    port = metrics_port if metrics_port is not None else settings.worker_metrics_port
    if port is not None:
        import structlog
        from prometheus_client import start_http_server

        from app.platform.metrics import WORKER

        # A thread of this process: the worker's counters, nobody else's.
        start_http_server(port, addr=settings.worker_metrics_host, registry=WORKER)
        structlog.get_logger(__name__).info("worker.metrics_serving", port=port)
    # arq runs on the loop current when the worker is built; uvloop (as the API uses) cuts
    # the per-call cost of the many small Redis, PostgreSQL and HTTP exchanges a job makes.
    asyncio.set_event_loop(uvloop.new_event_loop())
    create_worker(settings, burst=burst).run()


def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    down: Annotated[bool, typer.Option(help="Downgrade to --revision instead.")] = False,
) -> None:
    """Apply (or revert) database migrations."""
    from app.platform import migrate as migrations

    settings = load_settings()
    if down:
        migrations.downgrade(settings.database_dsn, revision)
    else:
        migrations.upgrade(settings.database_dsn, revision)


def keygen() -> None:
    """Print a new random HIREHOOK_SECRET_KEY."""
    from app.platform.crypto import generate_key

    typer.echo(generate_key())
