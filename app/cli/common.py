"""What every command group shares: settings with logging configured, services for a command,
and the environment file ``hirehook dev`` leaves for the commands run beside it."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import typer

from app.platform.settings import Settings

# Relative to the working directory: `make dev` and the operator's other terminal both run
# from the checkout. Git-ignored with the rest of .hirehook/.
DEV_ENV_FILE = Path(".hirehook") / "env"
_PID_LINE = re.compile(r"^# hirehook dev pid: (\d+)$", re.MULTILINE)


class _Verbosity:
    """Whether ``--verbose`` was given to this invocation (set by the root callback)."""

    verbose = False


VERBOSITY = _Verbosity()


def load_settings(*, serving: bool = False) -> Settings:
    """Settings from the environment (completed from a running ``hirehook dev``'s file), with
    logging and the outbound-URL policy configured from them.

    A command (not ``serving``: the API, the worker) logs only warnings and errors, on stderr,
    unless ``--verbose``: its output is its result, not the steps taken to get there.
    """
    import logging

    from app.platform import outbound
    from app.platform.logs import configure

    use_dev_env(os.environ)
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    if not serving and not VERBOSITY.verbose:
        # On the handler rather than in structlog's level: structlog caches each logger at
        # its first use, and a command run in process (the tests) must not leave the app's
        # loggers quieter than the process configured them.
        for handler in logging.getLogger().handlers:
            handler.setLevel(max(handler.level, logging.WARNING))
    outbound.configure(outbound.OutboundPolicy.from_settings(settings))
    return settings


async def with_services(settings: Settings, action: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``action(services)`` with a process's services, closed afterwards."""
    from app.sources import create_services

    services = create_services(settings)
    try:
        return await action(services)
    finally:
        await services.close()


def write_dev_env(env: Mapping[str, str], path: Path = DEV_ENV_FILE) -> None:
    """Write the ``HIREHOOK_*`` variables of ``env`` for commands run in this directory while
    this process (``hirehook dev``) runs; readable by its owner only, as it may hold keys.
    The values are shell-quoted, so ``set -a; . .hirehook/env`` works too."""
    lines = [
        "# Written by `hirehook dev` for the hirehook commands run in this directory; removed",
        "# when it stops. A variable set in the environment takes precedence over this file.",
        f"# hirehook dev pid: {os.getpid()}",
        *(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith("HIREHOOK_")),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    # Atomic: a command started meanwhile reads the old file or the new one, never half.
    partial.replace(path)


def remove_dev_env(path: Path = DEV_ENV_FILE) -> None:
    """Remove the file if this process wrote it (a later ``hirehook dev`` may own it now)."""
    with contextlib.suppress(OSError):
        if _writer_pid(path.read_text()) == os.getpid():
            path.unlink()


def use_dev_env(environ: MutableMapping[str, str], path: Path = DEV_ENV_FILE) -> None:
    """Fill the ``HIREHOOK_*`` variables ``environ`` lacks from a running ``hirehook dev``'s
    file. Only in development: when the environment names another one, the file is not read,
    so a production shell never picks up development servers or keys."""
    if environ.get("HIREHOOK_ENVIRONMENT", "development") != "development":
        return
    try:
        text = path.read_text()
    except OSError:
        return
    pid = _writer_pid(text)
    if pid is None or not _running(pid):
        # Left by a `hirehook dev` that was killed: its servers are gone with it.
        typer.echo(
            f"ignoring {path}: the `hirehook dev` that wrote it (pid {pid}) is not running",
            err=True,
        )
        return
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("HIREHOOK_"):
            words = shlex.split(value)
            environ.setdefault(name, words[0] if words else "")


def _writer_pid(text: str) -> int | None:
    found = _PID_LINE.search(text)
    return int(found.group(1)) if found else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
