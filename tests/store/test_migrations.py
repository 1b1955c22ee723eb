"""Migrations apply and revert cleanly, on an empty database and on one with records."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.platform.migrate import downgrade_async, upgrade_async
from app.platform.settings import Settings
from app.store.models import Base


async def _tables(dsn: str) -> set[str]:
    engine = create_async_engine(dsn)
    async with engine.connect() as conn:
        # Partitions of ``record`` are made at run time, not by the models.
        rows = await conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            )
        )
        names = set(rows.scalars())
    await engine.dispose()
    return names


async def _fresh_database(settings: Settings, name: str) -> str:
    assert settings.database_url is not None
    conn = await asyncpg.connect(str(settings.database_url))
    await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return settings.database_dsn.rsplit("/", 1)[0] + f"/{name}"


async def test_upgrade_downgrade_upgrade(settings: Settings) -> None:
    dsn = await _fresh_database(settings, "hirehook_migrations")
    expected = {t.name for t in Base.metadata.sorted_tables}

    await upgrade_async(dsn)
    assert await _tables(dsn) == expected | {"alembic_version"}
    await downgrade_async(dsn, "base")
    assert await _tables(dsn) == {"alembic_version"}
    await upgrade_async(dsn)
    assert await _tables(dsn) == expected | {"alembic_version"}


_ROWS = """
INSERT INTO tenant (slug, name) VALUES ('acme', 'Acme');
INSERT INTO connection (tenant_id, source, secrets) VALUES (1, 'keldair', '\\x00');
INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                    headers, payload, raw_body, answer_status, answer_headers, answer_body,
                    received_at, subjects)
VALUES ('018f0000-0000-7000-8000-000000000001', 1, 1, 'keldair', 'evt-old', 'applicant.hired',
        true, '{"content-type": "application/json"}', '{"id": "evt-old"}', 'old', 200, '{}',
        'first', now() - interval '70 days', '{"person": "p-1"}'),
       ('018f0000-0000-7000-8000-000000000002', 1, 1, 'keldair', 'evt-new', 'applicant.hired',
        true, '{}', '{"id": "evt-new"}', 'new', 200, '{}', 'second', now(), '{}');
INSERT INTO outbox (record_id, task) VALUES ('018f0000-0000-7000-8000-000000000001', 'process');
"""


async def _run(dsn: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg", "postgresql"))
    try:
        if sql.lstrip().upper().startswith("SELECT"):
            return [tuple(row) for row in await conn.fetch(sql)]
        await conn.execute(sql)
        return []
    finally:
        await conn.close()


async def test_records_survive_the_partitioning_and_its_downgrade(settings: Settings) -> None:
    dsn = await _fresh_database(settings, "hirehook_migrations_rows")
    await upgrade_async(dsn, "0005")
    await _run(dsn, _ROWS)

    await upgrade_async(dsn, "0007")
    keys = await _run(dsn, "SELECT dedupe_key, answer_body FROM record_key ORDER BY dedupe_key")
    assert keys == [("evt-new", b"second"), ("evt-old", b"first")]
    records = await _run(
        dsn,
        "SELECT dedupe_key, raw_body, tableoid::regclass::text, subjects->>'person' "
        "FROM record ORDER BY dedupe_key",
    )
    # The 70-day-old row went to its own month's partition, made for it.
    assert [(r[0], r[1], r[3]) for r in records] == [
        ("evt-new", b"new", None),
        ("evt-old", b"old", "p-1"),
    ]
    assert records[0][2] != records[1][2]
    assert all(str(r[2]).startswith("record_p") for r in records)
    assert await _run(dsn, "SELECT count(*) FROM outbox") == [(1,)]
    # The unique key still refuses the same event, now on the key table.
    with pytest.raises(asyncpg.UniqueViolationError):
        await _run(
            dsn,
            "INSERT INTO record_key (id, tenant_id, connection_id, source, dedupe_key) "
            "VALUES ('018f0000-0000-7000-8000-000000000009', 1, 1, 'keldair', 'evt-old')",
        )

    await downgrade_async(dsn, "0005")
    back = await _run(
        dsn, "SELECT dedupe_key, raw_body, answer_body FROM record ORDER BY dedupe_key"
    )
    assert back == [("evt-new", b"new", b"second"), ("evt-old", b"old", b"first")]
    assert await _run(dsn, "SELECT count(*) FROM outbox") == [(1,)]

    # A key whose month was dropped comes back down as an empty record that still dedupes.
    await upgrade_async(dsn, "0007")
    await _run(dsn, f"DROP TABLE {records[1][2]}")
    await downgrade_async(dsn, "0005")
    back = await _run(
        dsn, "SELECT dedupe_key, state, raw_body, answer_body FROM record ORDER BY dedupe_key"
    )
    assert back == [
        ("evt-new", "received", b"new", b"second"),
        ("evt-old", "purged", b"", b"first"),
    ]
