"""Costs of the partitioned record table: the intake insert before and after, migration 0007 on
a populated table, and the retention purge.

    .venv/bin/python -m bench.privacy --inserts 3000 --rows 100000

Starts its own embedded PostgreSQL. The "before" insert is the single statement of revision
0005 (flat ``record`` with its unique key), run on a database migrated to 0005; the "after"
is ``app.store.records.insert`` on a database at head. Inserts run one after the other, each
its own autocommit transaction, as on the request path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.platform.embedded import EmbeddedPostgres
from app.platform.ids import uuid7
from app.platform.migrate import upgrade_async
from app.store import records

_INSERT_0005 = text(
    """
    WITH new AS (
        INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                            state, subjects, thread, headers, payload, raw_body,
                            answer_status, answer_headers, answer_body)
        VALUES (:id, 1, 1, 'keldair', :key, 'applicant.hired', true, 'received', '{}', NULL,
                '{}', CAST(:payload AS jsonb), :raw, 200, '{}', :answer)
        ON CONFLICT (tenant_id, source, dedupe_key) DO NOTHING
        RETURNING id, known
    ), box AS (
        INSERT INTO outbox (record_id, task) SELECT id, 'process_record' FROM new WHERE known
    )
    SELECT id FROM new
    """
)
_PAYLOAD = '{"id": "evt", "type": "applicant.hired", "data": {"firstName": "' + "x" * 1800 + '"}}'
_SEED = """
INSERT INTO tenant (slug, name) VALUES ('acme', 'Acme');
INSERT INTO connection (tenant_id, source, secrets) VALUES (1, 'keldair', '\\x00');
"""


async def _database(admin: str, name: str) -> str:
    conn = await asyncpg.connect(admin)
    await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return admin.rsplit("/", 1)[0] + f"/{name}"


def _dsn(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _inserts(url: str, revision: str, count: int) -> list[float]:
    await upgrade_async(_dsn(url), revision)
    seed = await asyncpg.connect(url)
    await seed.execute(_SEED)
    await seed.close()
    engine = create_async_engine(_dsn(url), isolation_level="AUTOCOMMIT")
    timings = []
    async with engine.connect() as conn:
        for i in range(count):
            started = time.perf_counter()
            await _insert(conn, revision, f"evt-{i}")
            timings.append(time.perf_counter() - started)
    await engine.dispose()
    return timings


async def _insert(conn: AsyncConnection, revision: str, key: str) -> None:
    if revision == "0005":
        params = {"id": uuid7(), "key": key, "payload": _PAYLOAD, "raw": _PAYLOAD.encode()}
        await conn.execute(_INSERT_0005, {**params, "answer": b"{}"})
        return
    new = records.NewRecord(
        id=uuid7(),
        tenant_id=1,
        connection_id=1,
        source="keldair",
        dedupe_key=key,
        event_type="applicant.hired",
        known=True,
        subjects={},
        thread=None,
        headers={},
        payload={"raw": _PAYLOAD},
        raw_body=_PAYLOAD.encode(),
        answer_status=200,
        answer_headers={},
        answer_body=b"{}",
    )
    await records.insert(conn, new, task="process_record")


async def _migration(url: str, rows: int) -> float:
    await upgrade_async(_dsn(url), "0005")
    conn = await asyncpg.connect(url)
    await conn.execute(_SEED)
    # Spread over the last four months, so the migration makes several partitions.
    await conn.execute(
        """
        INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key, event_type, known,
                            headers, payload, raw_body, answer_status, answer_headers,
                            answer_body, received_at)
        SELECT gen_random_uuid(), 1, 1, 'keldair', 'evt-' || i, 'applicant.hired', true, '{}',
               CAST($1::text AS jsonb), convert_to($1::text, 'UTF8'), 200, '{}', '{}',
               now() - make_interval(secs => i * 120.0 * 86400 / $2)
        FROM generate_series(1, $2) AS i
        """,
        _PAYLOAD,
        rows,
    )
    await conn.close()
    started = time.perf_counter()
    await upgrade_async(_dsn(url), "head")
    return time.perf_counter() - started


async def _purge(url: str, batch: int) -> tuple[int, float]:
    from app.store import privacy

    engine = create_async_engine(_dsn(url))
    before = datetime.now(UTC) - timedelta(days=30)
    total = 0
    started = time.perf_counter()
    while True:
        async with engine.begin() as conn:
            done = await privacy.purge_records(conn, tenant_id=1, before=before, limit=batch)
        total += done
        if done < batch:
            break
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return total, elapsed


async def main(inserts: int, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        admin = pg.start()
        try:
            for revision in ("0005", "head", "0005", "head") if inserts else ():
                name = f"bench_{revision}_{uuid.uuid4().hex[:6]}"
                timings = await _inserts(await _database(admin, name), revision, inserts)
                print(
                    f"insert at {revision:>4}: median {statistics.median(timings) * 1e6:.0f} us,"
                    f" p99 {statistics.quantiles(timings, n=100)[98] * 1e6:.0f} us"
                )
            url = await _database(admin, "bench_migration")
            elapsed = await _migration(url, rows)
            print(f"migration 0005 -> head with {rows} records: {elapsed:.1f} s")
            purged, elapsed = await _purge(url, 1000)
            print(f"retention purge of {purged} records (batches of 1000): {elapsed:.1f} s")
        finally:
            pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inserts", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.inserts, args.rows))
