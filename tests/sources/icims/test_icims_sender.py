"""`hirehook send icims` against a real Hirehook served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.admin.tenants_file import apply_tenants, read_tenants_file
from app.cli import cli
from app.dev.demo import DEMO_TENANTS
from app.platform.settings import Settings
from app.services import Services
from app.sources.icims import ICIMS_EVENT_TYPES, IcimsCredentials, icims_sample, send_icims
from tests.support.app import make_settings, threaded_app


@pytest.fixture
def hirehook(settings: Settings) -> Iterator[str]:
    """Hirehook itself on 127.0.0.1 with an ephemeral port (its own thread and event loop),
    whose public base URL is that address (the links its answers carry point back to it)."""
    assert settings.database_url is not None and settings.redis_url is not None
    with threaded_app(
        lambda port: make_settings(
            str(settings.database_url),
            str(settings.redis_url),
            public_base_url=f"http://127.0.0.1:{port}",
        )
    ) as url:
        yield url


@pytest.fixture
async def demo(services: Services) -> Services:
    await apply_tenants(
        read_tenants_file(DEMO_TENANTS), engine=services.engine, cipher=services.cipher
    )
    return services


async def count_records(services: Services) -> int:
    async with services.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM record"))).scalar_one())


async def test_cli_sends_every_sample_with_every_auth_method(hirehook: str, demo: Services) -> None:
    runner = CliRunner()
    outputs = {}
    for auth in ("hmac", "basic", "oauth"):
        result = await asyncio.to_thread(
            runner.invoke, cli, ["send", "icims", "--url", hirehook, "--auth", auth]
        )
        assert result.exit_code == 0, result.output
        outputs[auth] = result.output
    # The server shares this process, so its log lines may be mixed into the output.
    first = [line for line in outputs["hmac"].splitlines() if line[:3] in ("200", "303")]
    assert sum(line.startswith("303 ") for line in first) == 4
    assert sum(line.startswith("200 ") for line in first) == 2
    assert all("repeat" not in line for line in first)
    # The same samples again, under other credentials: every answer is the first one replayed,
    # but the job's posting after its unposting is a new posting (and so is the unposting).
    posting = ("JobPostToWebEvent", "JobUnpostToWebEvent")
    for auth in ("basic", "oauth"):
        lines = [line for line in outputs[auth].splitlines() if line[:3] in ("200", "303")]
        assert len(lines) == 6
        again = [line for line in lines if line.split()[1].rstrip(":") not in posting]
        assert len(again) == 4 and all("(repeat" in line for line in again)
        assert {line.split(" (repeat")[0] for line in again} <= set(first)
        assert all("repeat" not in line for line in lines if line not in again)
    assert "token: fetched from /oauth/token" in outputs["oauth"]
    assert await count_records(demo) == 6 + 2 + 2


async def test_cli_refuses_wrong_credentials_with_a_nonzero_exit(
    hirehook: str, demo: Services
) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        [
            "send",
            "icims",
            "--url",
            hirehook,
            "--auth",
            "basic",
            "--type",
            "JobPostToWebEvent",
            "--username",
            "icims-demo-1234",
            "--password",
            "wrong",
        ],
    )
    assert result.exit_code == 1
    assert "401 JobPostToWebEvent" in result.output
    assert await count_records(demo) == 0


@pytest.mark.parametrize("gzip_body", [True, False])
async def test_sender_library_posts_signed_plain_and_gzip(
    hirehook: str, demo: Services, gzip_body: bool
) -> None:
    credentials = IcimsCredentials(
        hmac_user="icims-demo-1234", hmac_secret="demo-icims-hmac-secret-not-secret"
    )
    for index, event_type in enumerate(ICIMS_EVENT_TYPES):
        sample = icims_sample(event_type, system_id=f"9{index}")
        response = await asyncio.to_thread(
            send_icims, hirehook, sample, auth="hmac", credentials=credentials, gzip_body=gzip_body
        )
        assert response.status_code in (200, 303), response.text
    assert await count_records(demo) == len(ICIMS_EVENT_TYPES)
