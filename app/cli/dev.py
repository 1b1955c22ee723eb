"""``hirehook dev``: API + worker on embedded PostgreSQL and Redis, for a first run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

from app.demo import DEMO_TENANTS
from app.settings import Settings


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
