"""Hirehook under test: its settings, served in process or on loopback, and tenants added as the
tenants file would add them."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job
from fastapi import FastAPI
from redis.asyncio import Redis

from app.admin.tenants_file import ConnectionSpec, TenantsFile, TenantSpec, apply_tenants
from app.dev.demo import DEMO_TENANTS
from app.main import create_app
from app.platform.queue import deserialize
from app.platform.settings import Settings
from app.services import Services

TEST_SECRET_KEY = "test-secret-key-for-credentials-at-rest"


_RENDERED = re.compile(r"\[(?:debug|info|warning|error|critical) *\] (?P<event>\S+)")


def logged_events(captured: tuple[str, str]) -> list[str]:
    """The event names of the log lines in what capsys or capfd captured, in order.

    A log check asserts that the lines it expects are here before it asserts that something is
    absent, so that it cannot pass on an empty capture. A line that failed to write is an error.
    """
    text = "".join(captured)
    assert "--- Logging error ---" not in text, text
    return [m["event"] for line in text.splitlines() if (m := _RENDERED.search(line))]


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Test settings: no .env file, short timeouts, sweeper without grace."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": TEST_SECRET_KEY,
        "outbox_grace_s": 0,
        "db_connect_timeout_s": 1.0,
        "db_statement_timeout_s": 2.0,
        "db_pool_timeout_s": 1.0,
        # Bursts on a cold pool of a loaded machine; the bound's own tests use the default.
        "db_request_timeout_s": 5.0,
        "connection_cache_ttl_s": 0,
        # Tests send many refusals from one address; the delay's own tests turn it on.
        "auth_failure_delay_s": 0,
        "log_format": "console",
        **overrides,
    }
    return Settings(_env_file=None, **values)


async def run_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hirehook.test"
        ) as client:
            yield client


@contextlib.contextmanager
def threaded_app(settings_for: Callable[[int], Settings]) -> Iterator[str]:
    """Hirehook itself on 127.0.0.1 with an ephemeral port, in its own thread and event loop
    (for commands that post to a real server); ``settings_for(port)`` gives its settings."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings_for(port)), log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "Hirehook did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def add_connection(
    services: Services,
    *,
    tenant: str,
    source: str,
    secrets: dict[str, Any],
    options: dict[str, Any] | None = None,
    account: str | None = None,
    name: str = "default",
) -> None:
    """Create a tenant with one connection, as the tenants file would."""
    spec = TenantsFile(
        tenant=[
            TenantSpec(
                slug=tenant,
                name=tenant.title(),
                connection=[
                    ConnectionSpec(
                        source=source,
                        name=name,
                        account=account,
                        secrets=secrets,
                        options=options or {},
                    )
                ],
            )
        ]
    )
    await apply_tenants(spec, engine=services.engine, cipher=services.cipher)


def host_port(url: str) -> tuple[str, int]:
    """Host and port of a postgres:// or redis:// URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def arq_queue(redis: Redis) -> list[str]:
    """Job ids waiting in arq's default queue."""
    return [m.decode() for m in await redis.zrange("arq:queue", 0, -1)]


async def queued_records(redis: Redis, *, at_least: int = 0, wait_s: float = 2.0) -> list[str]:
    """The record ids named by the jobs waiting in arq's default queue (a batch job's id
    names only its first record, its arguments name them all); with ``at_least``, once that
    many are named or ``wait_s`` has passed: an API under load holds publishes back for a
    moment and answers before them (app.intake.publisher)."""
    deadline = time.monotonic() + wait_s
    while True:
        named: list[str] = []
        for job_id in await arq_queue(redis):
            if job_id.startswith("records:"):
                data = await redis.get(job_key_prefix + job_id)
                assert data is not None, job_id
                named.extend(deserialize_job(data, deserializer=deserialize).args[0])
            else:
                named.append(job_id.split(":", 1)[1])
        if len(named) >= at_least or time.monotonic() > deadline:
            return named
        await asyncio.sleep(0.01)


_LOOPBACK_PORT = re.compile(r"\b(?:127\.0\.0\.1|localhost):\d+")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def demo_tenants(ats_base: str) -> str:
    """The demo tenants file (demo/tenants.toml) with every loopback URL on ``ats_base``.

    The demo's connections fetch from and poll the stand-in ATS APIs ``hirehook dev`` serves on
    a fixed port; a test that reached it would talk to whatever listens there."""
    netloc = urlsplit(ats_base).netloc
    text = _LOOPBACK_PORT.sub(netloc, DEMO_TENANTS.read_text())
    for value in _strings(tomllib.loads(text)):
        parts = urlsplit(value if value.startswith(("http://", "https://")) else "")
        if parts.hostname in {"127.0.0.1", "localhost", "::1"}:
            assert parts.netloc == netloc, f"demo/tenants.toml: {value} is not rewritten"
    return text
