"""The real entry points: `hirehook migrate`, `hirehook api` (uvicorn) and `hirehook worker`
as separate processes on loopback, driven by `hirehook send`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import TEST_SECRET_KEY, demo_tenants


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(
    settings: Settings, services: Services, closed_port: int, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    # The demo's stand-in ATS port may be served on this machine (`make dev`): the polled
    # connection would record what it finds there. Here every call to the stand-in is refused.
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(demo_tenants(f"http://127.0.0.1:{closed_port}"))
    env = {
        **os.environ,
        "HIREHOOK_ENVIRONMENT": "test",
        "HIREHOOK_DATABASE_URL": str(settings.database_url),
        "HIREHOOK_REDIS_URL": str(settings.redis_url),
        "HIREHOOK_SECRET_KEY": TEST_SECRET_KEY,
        "HIREHOOK_TENANTS_FILE": str(tenants),
        "HIREHOOK_LOG_FORMAT": "json",
    }
    cli = [sys.executable, "-m", "app.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    api = subprocess.Popen([*cli, "api", "--port", str(port)], env=env)
    worker = subprocess.Popen([*cli, "worker"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        # Generous: two interpreters start at once on what may be a loaded 2-core machine.
        deadline = time.monotonic() + 60
        while not ready(f"{base}/health/ready"):
            if time.monotonic() > deadline:
                pytest.fail("the API did not become ready")
            time.sleep(0.1)
        yield base, env
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def run(*argv: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


async def test_send_records_and_worker_processes(
    stack: tuple[str, dict[str, str]], services: Services
) -> None:
    base, env = stack
    cli = [sys.executable, "-m", "app.cli", "send", "keldair", "--url", base]
    first = await run(*cli, "--event-id", "e2e-1", "--gzip", env=env)
    again = await run(*cli, "--event-id", "e2e-1", env=env)
    assert first.startswith("200 "), first
    assert first == again
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        async with services.engine.connect() as conn:
            state = (
                await conn.execute(text("SELECT state FROM record WHERE dedupe_key = 'e2e-1'"))
            ).scalar_one_or_none()
        if state == "processed":
            break
        await asyncio.sleep(0.2)
    assert state == "processed"
    async with services.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one() == 1
