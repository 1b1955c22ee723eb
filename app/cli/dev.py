"""``hirehook dev``: API + worker on embedded PostgreSQL and Redis, for a first run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

from app.cli.common import DEV_ENV_FILE, remove_dev_env, write_dev_env
from app.dev.demo import DEMO_ATS_PORT, DEMO_TENANTS
from app.platform.backoff import Backoff
from app.platform.settings import Settings


def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where embedded servers keep data.")] = Path(
        ".hirehook"
    ),
    ats_port: Annotated[
        int,
        typer.Option(help="Port of the stand-in HR Manager and SmartRecruiters APIs (0: none)."),
    ] = DEMO_ATS_PORT,
) -> None:
    """Run API + worker; starts an embedded PostgreSQL and Redis when no URLs are set."""
    from app.platform import migrate as migrations
    from app.platform.embedded import EmbeddedPostgres, EmbeddedRedis, start_missing
    from app.platform.logs import configure

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
    exe = [sys.executable, "-m", "app.cli"]
    children = [Child("api", [*exe, "api"], env), Child("worker", [*exe, "worker"], env)]
    if ats_port:
        # The demo tenant's HR Manager and SmartRecruiters connections fetch from (and poll)
        # these stand-ins, so enrichment runs end to end without an ATS account.
        ats = [sys.executable, "-m", "app.dev.demo_ats", "--port", str(ats_port)]
        children.append(Child("demo ATS APIs", ats, env))
    try:
        started = start_missing(env, data_dir)
        os.environ.update(env)
        settings = Settings()
        migrations.upgrade(settings.database_dsn)
        admin_key = asyncio.run(create_admin_key(settings))
        base = f"http://127.0.0.1:{port}"
        # The operator's commands in another terminal find what they need here, without
        # exporting anything: the API and a key of their own for records, dead letters,
        # tenants, ... (as against a deployment), the servers and the secret key for
        # migrate, tenants load and admin-keys. The key printed below is not in the file:
        # it is shown once, for the console.
        cli_key = asyncio.run(create_admin_key(settings, "dev cli"))
        write_dev_env({**env, "HIREHOOK_URL": base, "HIREHOOK_ADMIN_KEY": cli_key})
        for child in children:
            child.start(time.monotonic())
        _wait_http(f"{base}/health/live", 30)
        typer.echo(
            "\nHirehook is running.\n"
            f"  API docs:   {base}/docs\n"
            f"  Readiness:  {base}/health/ready\n"
            f"  Console:    {base}/console (admin key below)\n"
            f"  PostgreSQL: {mask_password(env['HIREHOOK_DATABASE_URL'])}\n"
            f"  Redis:      {mask_password(env['HIREHOOK_REDIS_URL'])}\n\n"
            "Admin key for the console and /v1/admin (shown once, only its hash is kept):\n"
            f"  {admin_key}\n\n"
            "Operator commands, in another terminal in this directory (they read "
            f"{DEV_ENV_FILE}: the API above, with a key of their own):\n"
            "  .venv/bin/hirehook records list\n"
            "  .venv/bin/hirehook admin-keys create NAME\n\n"
            "Send signed demo events:\n"
            + "".join(f"  .venv/bin/hirehook send {name} --url {base}\n" for name in senders())
            + "\n"
            "Ctrl-C stops everything.\n"
        )
        while True:
            supervise(children, time.monotonic(), typer.echo)
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("\nstopping...")
    finally:
        # A second Ctrl-C or SIGTERM must not abandon the servers half-stopped; every wait
        # below is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        remove_dev_env()
        running = [c.process for c in children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        for server in reversed(started):
            server.stop()


async def create_admin_key(settings: Settings, purpose: str = "dev") -> str:
    """A fresh admin key for this run of ``hirehook dev`` (named after its purpose and start)."""
    from app.admin import keys
    from app.platform.db import create_engine

    engine = create_engine(settings)
    try:
        # The pid keeps two starts within one second apart; names are unique.
        name = f"{purpose} {datetime.now(UTC):%Y-%m-%d %H:%M:%S} pid {os.getpid()}"
        created = await keys.create(engine, name)
    finally:
        await engine.dispose()
    return created.key


# A child that dies is started again after a pause that doubles with each quick death
# (1 s, 2 s, ... 30 s), so a crash loop neither spins nor gives up; one that ran for a minute
# starts over at 1 s.
RESTART_BACKOFF = Backoff(base_s=1.0, cap_s=30.0)
STABLE_AFTER_S = 60.0


@dataclass
class Child:
    """One supervised process of ``hirehook dev``."""

    name: str
    args: Sequence[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # Quick deaths in a row, and when the next start is due while the child is down.
    failures: int = 0
    restart_at: float | None = field(default=None)

    def start(self, now: float) -> None:
        """Start (or start again) the process."""
        self.process = subprocess.Popen(list(self.args), env=self.env)  # noqa: S603
        self.started_at = now
        self.restart_at = None


def supervise(children: Sequence[Child], now: float, say: Callable[[str], object]) -> None:
    """One look at every child: schedule a restart for one that died, start one that is due.

    Without this a worker that exits (it used to, when Redis went away) or an API that
    crashes would end ``hirehook dev`` altogether.
    """
    for child in children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                say(f"starting {child.name} again")
                child.start(now)
            continue
        code = None if child.process is None else child.process.poll()
        if code is None:
            continue
        if now - child.started_at >= STABLE_AFTER_S:
            child.failures = 0
        child.failures += 1
        delay = RESTART_BACKOFF.delay(child.failures)
        child.restart_at = now + delay
        say(f"{child.name} exited with status {code}; restarting it in {delay:.0f} s")


def senders() -> list[str]:
    """The sources ``hirehook send`` has a sample sender for."""
    from app.sources import REGISTRY

    return [name for name, source in REGISTRY.items() if source.send is not None]


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
