"""The engine: the only place that knows how to reach PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.platform.settings import Settings

# Everything a sick or unreachable database can raise; mapped to 503, never to 500.
DB_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

T = TypeVar("T")

# Database work abandoned by run_bounded, still cleaning up; held so it is not collected.
_abandoned: set[asyncio.Task[Any]] = set()


async def run_bounded(work: Callable[[], Awaitable[T]], timeout_s: float | None) -> T:
    """``work()``, or :class:`TimeoutError` as soon as ``timeout_s`` has passed.

    Cancelling a statement is not instant: SQLAlchemy invalidates the connection and closes
    it gracefully (up to 2 s against a server that does not answer) before the cancellation
    reaches the caller. So the work runs in a task of its own, and on expiry the caller gets
    its answer at once while the cancelled task finishes that cleanup in the background.
    """
    if timeout_s is None:
        return await work()

    async def call() -> T:
        return await work()

    task = asyncio.ensure_future(call())
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout_s)
    finally:
        if not task.done():
            # Timed out, or the caller itself was cancelled.
            task.cancel()
            _abandoned.add(task)
            task.add_done_callback(_reap)


def _reap(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        # Retrieved, so asyncio does not log it: the caller already answered for it.
        task.exception()


async def settle_abandoned(timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) for this loop's abandoned work to finish cleaning up,
    so the engine is disposed of with no connection still closing."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _abandoned if t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine whose every wait is bounded, so a sick database yields a fast 503, not a hang."""
    statement_ms = int(settings.db_statement_timeout_s * 1000)
    return create_async_engine(
        settings.database_dsn,
        # No overflow: overflow connections are closed as soon as they are returned, and
        # under a burst that means a new TCP (and TLS) handshake per request.
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_statement_timeout_s + 1,
            "server_settings": {
                "statement_timeout": str(statement_ms),
                "lock_timeout": str(statement_ms),
                "idle_in_transaction_session_timeout": str(statement_ms * 4),
                "application_name": "hirehook",
            },
        },
    )
