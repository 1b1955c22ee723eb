"""What keeps working when tables grow: indexes behind every cascading delete, and a sweeper
that drains a backlog larger than one batch in one run."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app.platform.queue import PROCESS_RECORD, deserialize
from app.services import Services
from app.workers.jobs import sweep_outbox
from tests.support.app import add_connection, arq_queue
from tests.support.keldair import SECRET

# The indexes migrations 0004 and 0007 add so that deleting a tenant (or a connection) does not
# scan every record key, delivery and dead letter of every tenant (records go with their keys).
ADDED_INDEXES = {
    "ix_record_key_connection_id": ("record_key", ["connection_id"]),
    "ix_delivery_tenant_id": ("delivery", ["tenant_id"]),
    "ix_dead_letter_tenant_id": ("dead_letter", ["tenant_id"]),
}


async def test_migrated_schema_has_the_cascade_indexes(services: Services) -> None:
    async with services.engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT ci.relname AS name, t.relname AS tbl, i.indisvalid AS valid,
                       array(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY
                             AS k(attnum, ord)
                             JOIN pg_attribute a
                               ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                             ORDER BY k.ord) AS columns
                FROM pg_index i
                JOIN pg_class ci ON ci.oid = i.indexrelid
                JOIN pg_class t ON t.oid = i.indrelid
                WHERE ci.relname = ANY(:names)
                """
            ),
            {"names": list(ADDED_INDEXES)},
        )
        found = {r.name: (r.tbl, list(r.columns), r.valid) for r in rows}
    assert found == {name: (tbl, cols, True) for name, (tbl, cols) in ADDED_INDEXES.items()}


async def test_every_foreign_key_is_backed_by_an_index(services: Services) -> None:
    # ON DELETE CASCADE looks the referencing rows up by the key's columns: without an index
    # leading with them, deleting one tenant reads whole tables. This holds for tables added
    # later too.
    async with services.engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT c.conrelid::regclass::text AS tbl, c.conname AS name
                FROM pg_constraint c
                WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
                  AND NOT EXISTS (
                    SELECT 1 FROM pg_index i
                    WHERE i.indrelid = c.conrelid AND i.indisvalid
                      AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                      AND c.conkey @> (i.indkey::int2[])[0:cardinality(c.conkey) - 1]
                  )
                """
            )
        )
        unindexed = [(r.tbl, r.name) for r in rows]
        total = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint "
                    "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
                )
            )
        ).scalar_one()
    assert total >= 10  # the check above looked at the real schema
    assert unindexed == []


async def commit_records(services: Services, count: int) -> list[str]:
    """``count`` records with their outbox rows, committed, as the intake leaves them."""
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    async with services.engine.begin() as conn:
        rows = await conn.execute(
            text(
                """
                WITH key AS (
                    INSERT INTO record_key (id, tenant_id, connection_id, source, dedupe_key)
                    SELECT gen_random_uuid(), c.tenant_id, c.id, c.source, 'evt_' || n
                    FROM connection c, generate_series(1, :count) AS n
                    RETURNING id, tenant_id, connection_id, source, dedupe_key, received_at
                ), new AS (
                    INSERT INTO record (id, received_at, tenant_id, connection_id, source,
                                        dedupe_key, event_type, known, headers, payload,
                                        raw_body)
                    SELECT id, received_at, tenant_id, connection_id, source, dedupe_key,
                           'applicant.hired', true, '{}'::jsonb, '{}'::jsonb, '\\x7b7d'::bytea
                    FROM key
                    RETURNING id
                )
                INSERT INTO outbox (record_id, task)
                SELECT id, :task FROM new RETURNING record_id
                """
            ),
            {"count": count, "task": PROCESS_RECORD},
        )
        return [str(r) for r in rows.scalars()]


async def test_sweeper_drains_more_than_one_batch_in_one_run(services: Services) -> None:
    ids = await commit_records(services, 1200)
    # Redis lost every job: only the outbox knows about them.
    await services.queue.redis.flushdb()
    assert await sweep_outbox({"services": services}, batch=500) == 1200
    # Republished as batch jobs, as the API publishes them: every record in exactly one.
    published: list[str] = []
    for job_id in await arq_queue(services.queue.redis):
        assert job_id.startswith("records:")
        job = deserialize(await services.queue.redis.get(f"arq:job:{job_id}"))
        published += job["a"][0]
    assert sorted(published) == sorted(ids)


@pytest.mark.parametrize(("max_batches", "first"), [(1, 500), (2, 1000)])
async def test_sweeper_stops_after_max_batches_and_the_next_run_goes_on(
    services: Services, max_batches: int, first: int
) -> None:
    await commit_records(services, 1200)
    await services.queue.redis.flushdb()
    ctx = {"services": services}
    assert await sweep_outbox(ctx, batch=500, max_batches=max_batches) == first
    assert await sweep_outbox(ctx, batch=500) == 1200 - first
    assert await published_records(services) == 1200


async def published_records(services: Services) -> int:
    """Records named by the queued jobs (a batch job names several)."""
    count = 0
    for job_id in await arq_queue(services.queue.redis):
        job = deserialize(await services.queue.redis.get(f"arq:job:{job_id}"))
        count += len(job["a"][0]) if job_id.startswith("records:") else 1
    return count


async def test_sweeper_leaves_a_backlog_waiting_behind_an_older_queued_job(
    services: Services,
) -> None:
    # The workers are behind: the oldest job still queued was published an hour ago, so rows
    # due since then may be waiting their turn, not lost. Republishing them would only add
    # to the backlog. A row due before that job has no job left in the queue.
    ids = await commit_records(services, 3)
    await services.queue.redis.flushdb()
    async with services.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE outbox SET available_at = now() - interval '2 hours' "
                "WHERE record_id = CAST(:id AS uuid)"
            ),
            {"id": ids[0]},
        )
        await conn.execute(
            text(
                "UPDATE outbox SET available_at = now() - interval '30 minutes' "
                "WHERE record_id <> CAST(:id AS uuid)"
            ),
            {"id": ids[0]},
        )
    assert await services.queue.enqueue_record(ids[1]) == "queued"
    hour_ago_ms = (time.time() - 3600) * 1000
    await services.queue.redis.zadd("arq:queue", {f"record:{ids[1]}": hour_ago_ms})
    assert await services.queue.oldest_queued_s() == pytest.approx(hour_ago_ms / 1000)

    ctx = {"services": services}
    assert await sweep_outbox(ctx) == 1
    assert sorted(await arq_queue(services.queue.redis)) == sorted(
        [f"record:{ids[0]}", f"record:{ids[1]}"]
    )
    # Once the queue has drained, what is still not done was lost after all.
    await services.queue.redis.flushdb()
    async with services.engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET available_at = now() - interval '1 hour'"))
    assert await services.queue.oldest_queued_s() is None
    assert await sweep_outbox(ctx) == 3
