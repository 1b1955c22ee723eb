"""The ``hirehook`` CLI against the session's servers: in process (Click's runner) or as its own
process, as an operator runs it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import orjson
from typer.testing import CliRunner

from app.cli import cli
from app.platform.settings import Settings
from tests.support.workers import (
    worker_env,
)


async def hirehook(
    settings: Settings, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command in process, with the environment a process would get."""
    env = {
        k: v
        for k, v in worker_env(settings, log_format="console").items()
        if k.startswith("HIREHOOK_")
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), input=stdin, env=env, catch_exceptions=False
    )
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful ``--json`` command printed."""
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


async def hirehook_process(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process against the session's servers."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", *args],
        env=worker_env(settings, log_format="console"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
