"""The engine: the only place that knows how to reach PostgreSQL."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings

# Everything a sick or unreachable database can raise; mapped to 503, never to 500.
DB_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


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
