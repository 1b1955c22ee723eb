"""Real PostgreSQL and Redis for the whole session; every test starts from empty tables."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from typer.testing import CliRunner

from app import outbound
from app.demo import DEMO_TENANTS
from app.embedded import EmbeddedPostgres, EmbeddedRedis
from app.logs import configure as configure_logging
from app.main import create_app
from app.migrate import upgrade_async
from app.models import Base
from app.services import Services
from app.settings import Settings
from app.sources import create_services
from app.tenants import ConnectionSpec, TenantsFile, TenantSpec, apply_tenants
from tests.support.fake_ats import FakeATS, serve

TEST_SECRET_KEY = "test-secret-key-for-credentials-at-rest"

# The fakes listen on http://127.0.0.1: the test environment's policy, as Services.create sets
# it, also for the tests that check configurations without building services.
outbound.configure(outbound.OutboundPolicy.of(loopback_http=True))


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a line is emitted.

    app.logs binds its handler to the ``sys.stderr`` of the moment it configures; capsys and
    capfd swap that stream per test, and Click's runner swaps it per command and closes its own
    afterwards (every later line would then fail to write and be lost)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def _from_pytest(handler: logging.Handler) -> bool:
    # pytest adds its own handlers to the root logger for each phase of a test (caplog and the
    # report's "Captured log" section) and removes them itself.
    return type(handler).__module__.startswith("_pytest.")


@dataclass
class _Logging:
    """What ``app.logs.configure`` changes: root handlers, logger levels, structlog's config."""

    handlers: list[logging.Handler]
    levels: dict[str, int]
    structlog_config: dict[str, Any]

    @classmethod
    def now(cls) -> _Logging:
        loggers = logging.root.manager.loggerDict.items()
        return cls(
            handlers=list(logging.root.handlers),
            levels={
                "": logging.root.level,
                **{n: lg.level for n, lg in loggers if isinstance(lg, logging.Logger)},
            },
            structlog_config=structlog.get_config(),
        )

    def restore(self, handlers: list[logging.Handler]) -> None:
        logging.root.handlers[:] = handlers
        for name, level in self.levels.items():
            logger = logging.getLogger(name or None)
            if logger.level != level:
                logger.setLevel(level)
        structlog.configure(**self.structlog_config)


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    saved = _Logging.now()
    try:
        yield
    finally:
        saved.restore(saved.handlers)


@pytest.fixture(scope="session")
def _app_logging() -> _Logging:
    """Logging as the processes configure it (INFO, console lines), to the current stderr.

    Configured once, so every test sees the same: loggers structlog caches on first use keep
    the configuration of that moment, whichever test it was in."""
    kept = [h for h in logging.root.handlers if _from_pytest(h)]
    configure_logging("INFO", "console")
    handler = _CurrentStderr()
    handler.setFormatter(logging.root.handlers[0].formatter)
    logging.root.handlers[:] = [handler]
    baseline = _Logging.now()
    logging.root.handlers[:] = [*kept, handler]
    return baseline


@pytest.fixture(autouse=True)
def _logging_restored(_app_logging: _Logging, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The baseline logging around every test and around every in-process CLI command (each
    configures logging itself): a later line in the test, or in any later test, is captured."""
    isolation = CliRunner.isolation

    @contextlib.contextmanager
    def isolation_keeping_logs(self: CliRunner, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with _logging_kept(), isolation(self, *args, **kwargs) as streams:
            yield streams

    monkeypatch.setattr(CliRunner, "isolation", isolation_keeping_logs)
    yield
    _app_logging.restore(
        [*(h for h in logging.root.handlers if _from_pytest(h)), *_app_logging.handlers]
    )


_RENDERED = re.compile(r"\[(?:debug|info|warning|error|critical) *\] (?P<event>\S+)")


def logged_events(captured: tuple[str, str]) -> list[str]:
    """The event names of the log lines in what capsys or capfd captured, in order.

    A log check asserts that the lines it expects are here before it asserts that something is
    absent, so that it cannot pass on an empty capture. A line that failed to write is an error.
    """
    text = "".join(captured)
    assert "--- Logging error ---" not in text, text
    return [m["event"] for line in text.splitlines() if (m := _RENDERED.search(line))]


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(postgres_url, redis_url): external if given, else embedded servers owned by the session."""
    external = (
        os.environ.get("HIREHOOK_TEST_DATABASE_URL"),
        os.environ.get("HIREHOOK_TEST_REDIS_URL"),
    )
    if external[0] and external[1]:
        yield external[0], external[1]
        return
    base = tmp_path_factory.mktemp("servers")
    pg = EmbeddedPostgres(Path(base) / "postgres")
    redis = EmbeddedRedis(Path(base) / "redis")
    try:
        yield pg.start(), redis.start()
    finally:
        redis.stop()
        pg.stop()


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


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str]) -> Settings:
    """Settings pointing at the session's servers."""
    return make_settings(*servers)


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> None:
    """Schema at head, once per session."""
    await upgrade_async(settings.database_dsn)


@pytest.fixture
async def services(settings: Settings, migrated: None) -> AsyncIterator[Services]:
    """Fresh services over emptied tables and an empty Redis."""
    svc = create_services(settings)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with svc.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await svc.queue.redis.flushdb()
    try:
        yield svc
    finally:
        await svc.close()


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


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """:func:`threaded_app` with the session's settings."""
    with threaded_app(lambda _port: settings) as url:
        yield url


@pytest.fixture
async def client(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API, driven in-process."""
    async for c in run_app(create_app(settings)):
        yield c


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


@pytest.fixture
def fake_ats() -> Iterator[FakeATS]:
    """Fake HR Manager and SmartRecruiters APIs and vendor endpoint on loopback."""
    with serve(FakeATS()) as fake:
        yield fake


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port this test holds without listening: a connection to it is refused at once,
    and nothing else can take the port meanwhile (a fixed "unused" port may be in use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


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
