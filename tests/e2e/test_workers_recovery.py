"""Recovery: a worker SIGKILLed mid-job is replaced within a bounded time and the job completes
exactly once; jobs lost from Redis complete from the outbox; versions never go backwards."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
from arq import Retry

from app import sources
from app.platform.settings import Settings
from app.services import Services
from app.store.driver import driver_for
from app.store.normalized import Resource, upsert_view
from app.workers.jobs import process_record, sweep_outbox
from tests.support.app import arq_queue, queued_records
from tests.support.fake_ats import FakeATS, Step
from tests.support.workers import (
    add_source,
    fast_settings,
    log_events,
    record_event,
    rows,
    run_worker,
    spawn_worker,
    worker_env,
)


async def test_worker_killed_mid_job_is_completed_exactly_once_by_another(
    services: Services, settings: Settings, fake_ats: FakeATS, tmp_path: Path
) -> None:
    fake_ats.add_sr_candidate("c-1", jobs=["j-1"])
    # The first fetch never answers: the worker making it is killed while it waits.
    fake_ats.script.append(Step(match="/sr/candidates", hang=True))
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    # A short job timeout bounds how long a dead worker's job stays claimed.
    env = worker_env(settings, job_timeout_s="3", worker_lease_margin_s="1", api_call_timeout_s="2")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = spawn_worker(env, first_log, burst=True)
    try:
        deadline = time.monotonic() + 30
        while not fake_ats.calls_to("/sr/candidates"):
            assert time.monotonic() < deadline, "the first worker never called the ATS"
            assert first.poll() is None, first_log.read_text()
            await asyncio.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = time.monotonic()
    [claimed] = await rows(services, "SELECT attempts, done_at FROM outbox")
    assert (claimed.attempts, claimed.done_at) == (1, None)

    second = spawn_worker(env, second_log, burst=True)
    assert await asyncio.to_thread(second.wait, 60) == 0, second_log.read_text()
    recovered_in = time.monotonic() - killed_at

    [row] = await rows(services, "SELECT attempts, done_at FROM outbox")
    assert row.attempts == 2 and row.done_at is not None
    [record] = await rows(services, "SELECT state FROM record")
    assert record.state == "processed"
    # The killed worker's log was written (it started), and says it finished nothing.
    assert log_events(first_log, "worker.started")
    assert log_events(first_log, "job.record_processed") == []
    [done] = log_events(second_log, "job.record_processed")
    assert done["record_id"] == str(rid)
    assert [c.status for c in fake_ats.calls_to("/sr/candidates")][-1] == 200
    [delivery] = fake_ats.deliveries()
    assert delivery.headers["webhook-id"] == str(rid)
    assert len(await rows(services, "SELECT * FROM candidate")) == 1
    # Lease (3 s + 1 s) plus a worker's start-up, not arq's default of minutes.
    assert recovered_in < 20


async def test_redis_flushed_with_jobs_queued_completes_everything_from_the_outbox(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    for i in range(5):
        fake_ats.add_hrm_candidate(str(i))
    fake_ats.add_hrm_candidate("retrying")
    fake_ats.script.append(
        Step(match="/hrm/restful.svc/v2/acme-corp/Candidates/retrying", status=503)
    )
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    ids = [
        await record_event(services, conn, "CandidateUpdated", {"CandidateId": str(i)})
        for i in range(5)
    ]
    retrying = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "retrying"})
    fast = fast_settings(settings)
    # One job is mid-retry (deferred in arq) when Redis loses everything.
    with pytest.raises(Retry):
        await process_record({"services": services, "handlers": sources.handlers()}, str(retrying))
    assert len(await queued_records(services.queue.redis, at_least=6)) == 6
    await services.queue.redis.flushall()
    assert await arq_queue(services.queue.redis) == []
    # The sweeper leaves a deferred retry alone until it is due; wait until then.
    [due] = await rows(
        services,
        "SELECT extract(epoch FROM available_at - now()) AS s FROM outbox WHERE record_id = :id",
        id=retrying,
    )
    await asyncio.sleep(max(0.0, float(due.s)) + 0.1)

    # The worker's start-up sweep republishes what the outbox still owes.
    await run_worker(fast)
    done = await rows(
        services, "SELECT record_id FROM outbox WHERE done_at IS NOT NULL ORDER BY record_id"
    )
    assert sorted(r.record_id for r in done) == sorted([*ids, retrying])
    assert len(await rows(services, "SELECT * FROM candidate")) == 6
    assert len(fake_ats.deliveries()) == 6
    assert {c.headers["webhook-id"] for c in fake_ats.deliveries()} == {
        str(r) for r in [*ids, retrying]
    }
    assert await sweep_outbox({"services": services}) == 0


async def test_an_older_fetch_finishing_last_never_overwrites_a_newer_one(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1")
    fake_ats.script.extend(
        [
            Step(match="/hrm", delay_s=1.5, patch={"FirstName": "Older"}),
            Step(match="/hrm", patch={"FirstName": "Newer"}),
        ]
    )
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    # A strict window and a lock shorter than the slow call let a second fetch race the first.
    fast = fast_settings(settings, coalesce_window_s=0, coalesce_lock_s=0.2)
    first = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    worker = asyncio.create_task(run_worker(fast))
    while not fake_ats.calls:  # noqa: ASYNC110 - the fake runs in another thread
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    second = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    await worker

    older, newer = fake_ats.calls_to("/hrm")
    assert older.started < newer.started and older.finished > newer.finished
    [candidate] = await rows(services, "SELECT first_name, version FROM candidate")
    assert candidate.first_name == "Newer"
    # Both records were processed; the late, older answer changed nothing.
    states = await rows(services, "SELECT state FROM record")
    assert {s.state for s in states} == {"processed"}
    # Every delivered event carries the newest stored state, whichever record it is for.
    delivered = {c.headers["webhook-id"]: orjson.loads(c.body) for c in fake_ats.deliveries()}
    assert set(delivered) == {str(first), str(second)}
    for event in delivered.values():
        assert event["data"]["candidate"]["first_name"] == "Newer"
        assert event["data"]["candidate"]["version"] == candidate.version
    # The cache keeps the newer document too.
    key = services.cache.key(conn.tenant_id, "hrmanager", "candidate", "1")
    cached = await services.cache.get(key)
    assert cached is not None and cached["doc"]["FirstName"] == "Newer"


async def test_upsert_only_moves_versions_forward(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    conn = await add_source(services, fake_ats, "hrmanager")

    def candidate(version: int, name: str, updated: int | None = None) -> Resource:
        return Resource(
            kind="candidate",
            external_id="1",
            fields={"first_name": name},
            document={"FirstName": name},
            fetched_at=datetime.fromtimestamp(version / 1e6, UTC),
            version=version,
            source_updated_at=datetime.fromtimestamp(updated, UTC) if updated else None,
        )

    async def write(resource: Resource) -> bool:
        async with services.engine.begin() as db:
            view = await upsert_view(
                db, tenant_id=conn.tenant_id, source="hrmanager", resource=resource
            )
            return view is not None

    assert await write(candidate(2_000_000, "two", updated=200))
    assert not await write(candidate(1_000_000, "one"))  # older fetch
    assert not await write(candidate(2_000_000, "again"))  # same fetch, applied twice
    assert not await write(candidate(3_000_000, "stale", updated=100))  # ATS says it is older
    assert await write(candidate(4_000_000, "four", updated=300))
    [row] = await rows(services, "SELECT first_name, version FROM candidate")
    assert (row.first_name, row.version) == ("four", 4_000_000)


async def test_upsert_through_the_driver_joins_the_transaction_and_gives_the_same_view(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    """The first upsert of a transaction goes through SQLAlchemy (it begins the transaction);
    the next ones through asyncpg's connection, in the same transaction: same view, and a
    refusal rolls the whole transaction back, leaving the pooled connection usable."""
    conn = await add_source(services, fake_ats, "hrmanager")
    fetched = datetime.fromtimestamp(1.5, UTC)

    def job(external_id: str) -> Resource:
        return Resource(
            kind="job",
            external_id=external_id,
            fields={"title": "Welder", "location": "Oslo"},
            document={"Name": "Welder"},
            fetched_at=fetched,
            version=1_500_000,
            source_updated_at=fetched,
        )

    async with services.engine.begin() as db:
        assert await driver_for(db) is None
        first = await upsert_view(
            db, tenant_id=conn.tenant_id, source="hrmanager", resource=job("a")
        )
        assert await driver_for(db) is not None
        second = await upsert_view(
            db, tenant_id=conn.tenant_id, source="hrmanager", resource=job("b")
        )
    assert first is not None and second is not None
    assert (first.pop("id"), second.pop("id")) == ("a", "b")
    assert first == second
    assert first["location"] == "Oslo" and first["fetched_at"] == fetched.isoformat()

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with services.engine.begin() as db:
            await upsert_view(db, tenant_id=conn.tenant_id, source="hrmanager", resource=job("c"))
            # No such tenant: refused by the server, through the driver.
            await upsert_view(db, tenant_id=-1, source="hrmanager", resource=job("d"))
    names = [r.external_id for r in await rows(services, "SELECT external_id FROM job")]
    assert sorted(names) == ["a", "b"]


async def test_upsert_strips_nul_characters_the_ats_sent(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    conn = await add_source(services, fake_ats, "hrmanager")
    resource = Resource(
        kind="candidate",
        external_id="1",
        fields={"first_name": "A\x00da"},
        document={"First\x00Name": ["A\x00da", {"Note": "\x00"}]},
        fetched_at=datetime.fromtimestamp(1, UTC),
        version=1_000_000,
    )
    async with services.engine.begin() as db:
        assert await upsert_view(
            db, tenant_id=conn.tenant_id, source="hrmanager", resource=resource
        )
    [row] = await rows(services, "SELECT first_name, document FROM candidate")
    assert row.first_name == "Ada"
    assert row.document == {"FirstName": ["Ada", {"Note": ""}]}
