"""Real PostgreSQL and Redis for the whole session; every test starts from empty tables."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import structlog
from sqlalchemy import make_url
from typer.testing import CliRunner

from app.admin import keys
from app.main import create_app
from app.platform import outbound
from app.platform.embedded import EmbeddedPostgres, EmbeddedRedis
from app.platform.logs import configure as configure_logging
from app.platform.migrate import upgrade_async
from app.platform.settings import Settings
from app.services import Services
from app.sources import create_services
from app.store.models import Base
from tests.support.app import host_port, make_settings, run_app, threaded_app
from tests.support.fake_ats import FakeATS, serve
from tests.support.proxy import FaultProxy

# Fixtures of the browser tests (headless Chromium against the app under uvicorn).
pytest_plugins = ["tests.support.browser"]

# The fakes listen on http://127.0.0.1: the test environment's policy, as Services.create sets
# it, also for the tests that check configurations without building services.
outbound.configure(outbound.OutboundPolicy.of(loopback_http=True))


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a line is emitted.

    app.platform.logs binds its handler to the ``sys.stderr`` of the moment it configures;
    capsys and capfd swap that stream per test, and Click's runner swaps it per command and
    closes its own afterwards (every later line would then fail to write and be lost)."""

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
    """What ``app.platform.logs.configure`` changes: root handlers, logger levels, structlog's
    config."""

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


def _worker_index() -> int | None:
    """This pytest-xdist worker's number (``gw3`` is 3), or None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else None


async def _database_of_worker(url: str, index: int) -> str:
    """``url`` with its database replaced by ``<database>_gw<index>``, created if missing:
    every test empties the tables, so parallel workers cannot share one database."""
    given = make_url(url)
    name = f"{given.database}_gw{index}"
    conn = await asyncpg.connect(given.set(drivername="postgresql").render_as_string(False))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return given.set(database=name).render_as_string(False)


def _redis_of_worker(url: str, index: int) -> str:
    """``url`` with database number ``<its number> + index`` (Redis has 16 by default)."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0) + index
    return urlunsplit(parts._replace(path=f"/{number}"))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(postgres_url, redis_url): external if given, else embedded servers owned by the session.

    Under pytest-xdist every worker is a session of its own: embedded servers of its own, or,
    on external servers, a database and a Redis database number of its own."""
    database_url = os.environ.get("HIREHOOK_TEST_DATABASE_URL")
    redis_url = os.environ.get("HIREHOOK_TEST_REDIS_URL")
    if database_url and redis_url:
        index = _worker_index()
        if index is not None:
            database_url = asyncio.run(_database_of_worker(database_url, index))
            redis_url = _redis_of_worker(redis_url, index)
        yield database_url, redis_url
        return
    base = tmp_path_factory.mktemp("servers")
    pg = EmbeddedPostgres(Path(base) / "postgres")
    redis = EmbeddedRedis(Path(base) / "redis")
    try:
        yield pg.start(), redis.start()
    finally:
        redis.stop()
        pg.stop()


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str]) -> Settings:
    """Settings pointing at the session's servers."""
    return make_settings(*servers)


# Every plain table (a partitioned one's leaves included) kept from autovacuum.
_NO_AUTOVACUUM = """
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_class c
             WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', t);
    END LOOP;
END $$;
"""


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> None:
    """Schema at head, once per session."""
    await upgrade_async(settings.database_dsn)
    # Tables are emptied with DELETE between tests (see _EMPTIED): without a vacuum their
    # freed space is not reused, so rows still come back in the order they were written, as
    # they did from a truncated table.
    url = make_url(str(settings.database_url)).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(False))
    try:
        await connection.execute(_NO_AUTOVACUUM)
    finally:
        await connection.close()


# Every table emptied, children first, and every sequence back at 1, in one round trip:
# a test's tables hold a handful of rows, and DELETE costs ~10 ms where TRUNCATE, which
# replaces each table's files, costs ~60-80 ms (one of ~1,000 tests' fixed costs).
_EMPTIED = "; ".join(
    # Table names from our own metadata, not input.
    [f"DELETE FROM {table.name}" for table in reversed(Base.metadata.sorted_tables)]  # noqa: S608
    + ["SELECT setval(c.oid, 1, false) FROM pg_class c WHERE c.relkind = 'S'"]
)


@pytest.fixture
async def services(settings: Settings, migrated: None) -> AsyncIterator[Services]:
    """Fresh services over emptied tables and an empty Redis."""
    svc = create_services(settings)
    async with svc.engine.begin() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(_EMPTIED)  # type: ignore[union-attr]
    await svc.queue.redis.flushdb()
    try:
        yield svc
    finally:
        await svc.close()


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


@pytest.fixture
async def admin_key(services: Services) -> str:
    """An admin API key (it also logs in to the console)."""
    return (await keys.create(services.engine, "ops")).key


@pytest.fixture
async def pg_proxy(settings: Settings) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the session's PostgreSQL (:func:`tests.support.proxy.via_proxy`
    gives settings that reach the database through it)."""
    assert settings.database_url is not None
    proxy = await FaultProxy(*host_port(str(settings.database_url))).start()
    yield proxy
    await proxy.close()
