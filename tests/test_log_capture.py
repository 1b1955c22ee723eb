"""In-process log lines reach pytest's capture, whatever ran before them.

The "no secret in the logs" checks read what ``capsys`` / ``capfd`` captured. A command run
through Click's runner configures logging (``app.platform.logs.configure``) while
``sys.stderr`` is the runner's own stream; without the fixtures of tests/conftest.py every
later line would go to that discarded stream, and such a check would pass on an empty capture.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import orjson
import pytest
import structlog
from typer.testing import CliRunner

from app.cli import cli
from app.platform.logs import configure as configure_logging
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection, logged_events
from tests.support.keldair import OTHER, SECRET, URL, event, signed
from tests.support.workers import worker_env


async def run_cli(settings: Settings, *args: str) -> None:
    """One command in process, as tests/cli/test_admin_cli.py runs them."""
    env = {
        k: v
        for k, v in worker_env(settings, log_format="console").items()
        if k.startswith("HIREHOOK_")
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output


async def test_a_line_logged_after_an_in_process_command_is_captured(
    settings: Settings,
    services: Services,
    client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    await run_cli(settings, "admin-keys", "list", "--json")
    capsys.readouterr()
    # An app line (a module-level logger) and a library's stdlib line, after the command.
    raw = orjson.dumps(event())
    headers = {**signed(raw, secret=OTHER), "content-type": "application/json"}
    response = await client.post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    logging.getLogger("tests.after_cli").warning("stdlib line after the command")
    structlog.get_logger("tests.after_cli").info("structlog.after_the_command")
    events = logged_events(capsys.readouterr())
    assert "keldair.unauthenticated" in events
    assert "structlog.after_the_command" in events
    assert "stdlib" in events
    # Configured outside the runner too, as tests/platform/test_units.py does: for the next test
    # to undo.
    configure_logging("ERROR", "json")
    assert not logging.getLogger().isEnabledFor(logging.INFO)


def test_a_line_logged_in_the_next_test_is_captured(capsys: pytest.CaptureFixture[str]) -> None:
    # Runs after the test above (file order): the configuration it left behind is gone.
    structlog.get_logger("tests.next_test").info("structlog.in_the_next_test")
    assert logged_events(capsys.readouterr()) == ["structlog.in_the_next_test"]
