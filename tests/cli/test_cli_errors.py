"""A failed command prints one line naming the cause and exits non-zero: no traceback, no
setting's value. Each case runs ``python -m app.cli`` as its own process, as an operator
would, in an empty working directory and an environment without any ``HIREHOOK_`` variable
but the ones the case sets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import asyncpg
import pytest
import typer
from pydantic import ValidationError

import app.cli
from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import TEST_SECRET_KEY, add_connection, host_port

# In every value a case sets, so the output can be searched for it.
SECRET = "s3kr1t-value"


async def hirehook(cwd: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process with only these ``HIREHOOK_`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}
    env.update({f"HIREHOOK_{k.upper()}": v for k, v in variables.items()})
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single stderr line of a failed run, checked to name each of ``names``."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and SECRET not in output, output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for name in names:
        assert name in line, (name, line)
    return line


def dead_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


def development(**variables: str) -> dict[str, str]:
    """Variables of a development run whose servers are not there."""
    return {
        "environment": "development",
        "database_url": f"postgresql://ops:{SECRET}@127.0.0.1:{dead_port()}/hirehook",
        "redis_url": f"redis://:{SECRET}@127.0.0.1:{dead_port()}/0",
        **variables,
    }


async def test_version(tmp_path: Path) -> None:
    result = await hirehook(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hirehook {version('hirehook')}"


async def test_a_missing_secret_key_is_named(tmp_path: Path) -> None:
    # No variables and no `hirehook dev` here: production, which needs a key.
    line = one_line_error(await hirehook(tmp_path, "records", "list"), "HIREHOOK_SECRET_KEY")
    assert "hirehook dev" in line


async def test_a_missing_database_url_is_named(tmp_path: Path) -> None:
    result = await hirehook(tmp_path, "records", "list", environment="development")
    one_line_error(result, "HIREHOOK_DATABASE_URL")


async def test_invalid_settings_name_the_setting_and_why_never_the_value(
    tmp_path: Path,
) -> None:
    result = await hirehook(
        tmp_path,
        "records",
        "list",
        environment="development",
        api_port=f"port-{SECRET}",
        database_url=f"mysql://ops:{SECRET}@db.internal/hirehook",
    )
    line = one_line_error(result, "invalid settings", "HIREHOOK_API_PORT", "HIREHOOK_DATABASE_URL")
    assert "integer" in line and "scheme" in line


async def test_an_unreachable_database_is_named_with_its_address(tmp_path: Path) -> None:
    variables = development()
    port = variables["database_url"].rsplit(":", 1)[1].split("/")[0]
    result = await hirehook(tmp_path, "records", "list", **variables)
    one_line_error(result, "PostgreSQL", f"127.0.0.1:{port}", "HIREHOOK_DATABASE_URL")


async def test_a_database_refusing_the_login_is_named(tmp_path: Path, settings: Settings) -> None:
    host, port = host_port(str(settings.database_url))
    variables = development(database_url=f"postgresql://nobody:{SECRET}@{host}:{port}/postgres")
    line = one_line_error(
        await hirehook(tmp_path, "records", "list", **variables), "PostgreSQL", "nobody"
    )
    assert f"{host}:{port}" in line


async def test_a_database_without_the_schema_points_at_migrate(
    tmp_path: Path, settings: Settings
) -> None:
    host, port = host_port(str(settings.database_url))
    admin = await asyncpg.connect(str(settings.database_url))
    try:
        await admin.execute("DROP DATABASE IF EXISTS unmigrated")
        await admin.execute("CREATE DATABASE unmigrated")
    finally:
        await admin.close()
    url = f"postgresql://postgres@{host}:{port}/unmigrated"
    result = await hirehook(tmp_path, "records", "list", **development(database_url=url))
    one_line_error(result, "PostgreSQL", "does not exist", "hirehook migrate")


async def test_an_unreachable_redis_is_named_with_its_address(
    tmp_path: Path, settings: Settings, services: Services
) -> None:
    # Erasing deletes cached documents in Redis inside the transaction: it needs Redis.
    await add_connection(
        services,
        tenant="acme",
        source="keldair",
        secrets={"signing_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
    )
    port = dead_port()
    result = await hirehook(
        tmp_path,
        "erase",
        "--tenant",
        "acme",
        "--source",
        "keldair",
        "--candidate",
        "c-1",
        environment="test",
        secret_key=TEST_SECRET_KEY,
        database_url=str(settings.database_url),
        redis_url=f"redis://:{SECRET}@127.0.0.1:{port}/0",
    )
    one_line_error(result, "Redis", f"127.0.0.1:{port}", "HIREHOOK_REDIS_URL")


async def test_sending_to_a_dead_port_names_the_address_not_the_path(tmp_path: Path) -> None:
    port = dead_port()
    url = f"http://127.0.0.1:{port}/v1/keldair/acme/events/{SECRET}"
    result = await hirehook(tmp_path, "send", "keldair", "--url", url)
    one_line_error(result, f"cannot reach http://127.0.0.1:{port}")


async def test_a_missing_tenants_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "tenants.toml"
    result = await hirehook(tmp_path, "tenants", "load", str(missing), **development())
    one_line_error(result, str(missing), "No such file")
    # The same file named by HIREHOOK_TENANTS_FILE stops the API before it starts.
    started = await hirehook(tmp_path, "api", **development(tenants_file=str(missing)))
    one_line_error(started, str(missing), "No such file")


async def test_a_missing_secrets_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "secrets.json"
    result = await hirehook(
        tmp_path,
        "connections",
        "create",
        "acme",
        "icims",
        "--secrets-file",
        str(missing),
        **development(),
    )
    one_line_error(result, str(missing), "No such file")


def boom() -> None:
    """A command failing in a way nobody foresaw."""
    raise ZeroDivisionError("nobody foresaw this")


REAL_CLI = app.cli.cli


@pytest.fixture
def failing_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = typer.Typer(pretty_exceptions_enable=False)
    broken.command()(boom)
    broken.command("other")(boom)
    monkeypatch.setattr(app.cli, "cli", broken)
    monkeypatch.setattr(sys, "argv", ["hirehook", "boom"])
    monkeypatch.delenv("HIREHOOK_DEBUG", raising=False)


def test_an_unexpected_failure_is_one_line_with_a_hint(
    failing_cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        app.cli.main()
    assert exited.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "ZeroDivisionError: nobody foresaw this" in line
    assert "--debug" in line and "HIREHOOK_DEBUG=1" in line


def test_debug_shows_the_traceback(failing_cli: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIREHOOK_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        app.cli.main()


def test_the_debug_option_shows_the_traceback(
    failing_cli: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The real command line, without settings: the validation error itself comes out.
    monkeypatch.setattr(app.cli, "cli", REAL_CLI)
    for name in [k for k in os.environ if k.startswith("HIREHOOK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["hirehook", "--debug", "records", "list"])
    with pytest.raises(ValidationError):
        app.cli.main()
