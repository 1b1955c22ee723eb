"""Group commit: concurrent requests share one statement, and each still learns only its own
row's fate after that statement committed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from app.intake.core import Deadline, Event, Intake, Outcome, json_answer
from app.platform.errors import AppError
from app.platform.group_commit import GroupCommit
from app.services import Services
from app.store import records, work
from app.store.normalized import Resource
from app.workers.context import Enrichment
from app.workers.jobs import process_record, process_records
from tests.support.app import add_connection, arq_queue, queued_records
from tests.support.keldair import SECRET

# --- the batching itself, without a database -------------------------------------------------


class Writer:
    """A batch writer that holds each batch until released, and remembers the batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_item_is_written_at_once_and_others_wait_for_a_free_writer() -> None:
    writer = Writer()
    batches: GroupCommit[int, int] = GroupCommit(writer, writers=1, max_batch=3)
    first = asyncio.ensure_future(batches.submit(0, None))
    await asyncio.sleep(0.01)
    assert writer.batches == [[0]]
    # The only writer is busy: these queue, then go in batches of at most three.
    rest = [asyncio.ensure_future(batches.submit(i, None)) for i in (2, 4, 6, 8)]
    await asyncio.sleep(0.01)
    assert writer.batches == [[0]]
    writer.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60, 80]
    assert writer.batches == [[0], [2, 4, 6], [8]]


async def test_each_item_gets_its_own_result_or_error() -> None:
    writer = Writer()
    writer.release.set()
    batches: GroupCommit[int, int] = GroupCommit(writer, writers=1, max_batch=10)
    results = await asyncio.gather(
        *(batches.submit(i, None) for i in range(4)), return_exceptions=True
    )
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)


async def test_a_failed_write_fails_only_its_own_batch() -> None:
    calls: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        if 13 in items:
            raise ConnectionError("database gone")
        return list(items)

    batches: GroupCommit[int, int] = GroupCommit(write, writers=1, max_batch=2)
    # Submitted in one turn of the loop: 13 and 1 share the first batch, 2 goes in the next.
    results = await asyncio.gather(
        *(batches.submit(i, None) for i in (13, 1, 2)), return_exceptions=True
    )
    assert calls == [[13, 1], [2]]
    assert isinstance(results[0], ConnectionError) and isinstance(results[1], ConnectionError)
    assert results[2] == 2


async def test_a_waiter_that_gives_up_gets_a_timeout_and_the_writer_goes_on() -> None:
    writer = Writer()
    batches: GroupCommit[int, int] = GroupCommit(writer, writers=1, max_batch=10)
    with pytest.raises(TimeoutError):
        await batches.submit(0, 0.01)
    later = asyncio.ensure_future(batches.submit(2, None))
    writer.release.set()
    assert await later == 20
    await batches.drain()


# --- against PostgreSQL ----------------------------------------------------------------------


def _event(connection: Any, key: str) -> Event:
    body = b'{"id": "%s"}' % key.encode()
    return Event(
        connection=connection,
        dedupe_key=key,
        event_type="applicant.hired",
        known=True,
        payload={"id": key},
        raw_body=body,
        headers={"content-type": "application/json"},
    )


async def _record(services: Services, event: Event) -> Outcome:
    return await services.intake.record(
        event,
        answer_for=lambda rid: json_answer(200, {"record": str(rid)}),
        deadline=Deadline(10),
    )


@pytest.fixture
async def acme(services: Services) -> Any:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    info = await services.connections.by_tenant("acme", "keldair")
    assert info is not None
    return info


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the intake writes (the request path's and a caller's)."""
    sizes: list[int] = []
    for name in ("insert_many", "insert_many_alone"):
        real = getattr(records, name)

        async def spy(
            conn: Any, batch: Sequence[records.NewRecord], *, task: str, real: Any = real
        ) -> Any:
            sizes.append(len(batch))
            return await real(conn, batch, task=task)

        monkeypatch.setattr(records, name, spy)
    return sizes


async def test_concurrent_events_share_statements_and_each_is_recorded_once(
    services: Services, acme: Any, counted: list[int]
) -> None:
    events = [_event(acme, f"evt_{i}") for i in range(60)]
    outcomes = await asyncio.gather(*(_record(services, e) for e in events))
    assert not any(o.duplicate for o in outcomes)
    assert len({o.record_id for o in outcomes}) == 60
    # Two writers: while they were busy the rest queued and went in batches.
    assert sum(counted) == 60 and len(counted) < 60 and max(counted) > 1
    async with services.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one()
        boxed = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    assert stored == boxed == 60
    # Every new record was published with its batch: lone ones as their own job, the rest
    # as jobs naming several records.
    jobs = await arq_queue(services.queue.redis)
    assert any(j.startswith("records:") for j in jobs)
    assert all(j.startswith(("record:", "records:")) for j in jobs)
    # The answer each request got is the one stored with its record.
    for sent, outcome in zip(events, outcomes, strict=True):
        found = await services.intake.find(
            tenant_id=acme.tenant_id, source="keldair", dedupe_key=sent.dedupe_key
        )
        assert found is not None and found.record_id == outcome.record_id
        assert outcome.answer is not None and found.answer == outcome.answer


async def test_two_deliveries_of_one_key_in_one_batch_make_one_record_and_one_answer(
    services: Services, acme: Any, counted: list[int]
) -> None:
    # Requests that reach the writers in one turn of the loop travel in the same batch.
    fillers = [_event(acme, f"fill_{i}") for i in range(2)]
    copies = [_event(acme, "evt_twice") for _ in range(5)]
    outcomes = await asyncio.gather(*(_record(services, e) for e in [*fillers, *copies]))
    assert counted == [7]
    twice = outcomes[2:]
    assert len({o.record_id for o in twice}) == 1
    assert [o.duplicate for o in twice].count(False) == 1
    assert all(o.answer == twice[0].answer for o in twice)
    async with services.engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM record WHERE dedupe_key = 'evt_twice'"))
        ).scalar_one()
    assert count == 1


async def test_a_record_the_database_refuses_fails_alone(
    services: Services, acme: Any, counted: list[int]
) -> None:
    # A connection deleted while its request was in flight: its row breaks a foreign key.
    gone = dataclasses.replace(acme, id=acme.id + 10_000)
    good = [_event(acme, f"ok_{i}") for i in range(6)]
    results = await asyncio.gather(
        *(_record(services, e) for e in [*good[:3], _event(gone, "orphan"), *good[3:]]),
        return_exceptions=True,
    )
    refused = results[3]
    assert isinstance(refused, AppError) and refused.status == 503
    assert all(isinstance(r, Outcome) and not r.duplicate for i, r in enumerate(results) if i != 3)
    async with services.engine.connect() as conn:
        keys = (await conn.execute(text("SELECT dedupe_key FROM record"))).scalars().all()
    assert sorted(keys) == sorted(e.dedupe_key for e in good)


async def test_the_request_paths_batch_statement_goes_to_the_driver_directly(
    services: Services, acme: Any
) -> None:
    # SQLAlchemy's execution path around the one batch statement (compiled cache, adapted
    # cursor, result wrapping) cost a quarter of the statement's CPU in the API.
    through_sqlalchemy: list[str] = []

    def seen(*args: Any) -> None:
        through_sqlalchemy.append(args[2])

    engine = services.autocommit.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        outcomes = await asyncio.gather(
            *(_record(services, _event(acme, f"d_{i}")) for i in range(5))
        )
        again = await _record(services, _event(acme, "d_0"))
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not any("INSERT INTO record_key" in s for s in through_sqlalchemy)
    assert not any(o.duplicate for o in outcomes) and again.duplicate
    assert again.record_id == outcomes[0].record_id
    async with services.engine.connect() as conn:
        boxed = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    assert boxed == 5


async def test_a_connection_lost_under_the_batch_statement_is_not_handed_out_again(
    services: Services, acme: Any
) -> None:
    await asyncio.gather(*(_record(services, _event(acme, f"warm_{i}")) for i in range(8)))
    async with services.engine.connect() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'hirehook' AND pid <> pg_backend_pid()"
            )
        )
    # Every pooled connection is dead now: each failed attempt must discard the one it used,
    # so the intake recovers within a pool's worth of attempts (never a 2xx for a failure).
    answered: list[str] = []
    for i in range(services.settings.db_pool_size + 2):
        try:
            await _record(services, _event(acme, f"after_{i}"))
        except AppError as exc:
            assert exc.status == 503
            answered.append("503")
        else:
            answered.append("ok")
    assert answered[-2:] == ["ok", "ok"]
    async with services.engine.connect() as conn:
        keys = (
            (
                await conn.execute(
                    text("SELECT dedupe_key FROM record WHERE dedupe_key LIKE 'after_%'")
                )
            )
            .scalars()
            .all()
        )
    assert sorted(keys) == sorted(f"after_{i}" for i, a in enumerate(answered) if a == "ok")


# --- the workers' side: a batch job --------------------------------------------------------


async def test_a_batch_job_finishes_every_record_once_whatever_ran_before(
    services: Services, acme: Any
) -> None:
    outcomes = [await _record(services, _event(acme, f"job_{i}")) for i in range(5)]
    ids = [str(o.record_id) for o in outcomes]
    ctx: dict[str, Any] = {"services": services, "handlers": {}}
    # One of them was already taken by its own job (the sweeper republished it, say).
    assert await process_record(ctx, ids[0]) == "processed"
    assert await process_records(ctx, ids) == "processed 4 of 5"
    assert await process_records(ctx, ids) == "processed 0 of 5"
    async with services.engine.connect() as conn:
        states = (
            await conn.execute(
                text("SELECT state, count(*) FROM record GROUP BY state ORDER BY state")
            )
        ).all()
        open_rows = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NULL"))
        ).scalar_one()
        attempts = (await conn.execute(text("SELECT sum(attempts) FROM outbox"))).scalar_one()
    assert [tuple(s) for s in states] == [("processed", 5)]
    assert open_rows == 0
    # The second batch run claimed nothing: every row was run exactly once.
    assert attempts == 5


async def test_a_batch_job_leaves_rows_another_run_holds_and_takes_what_the_sweeper_holds(
    services: Services, acme: Any
) -> None:
    # A backlog older than the sweeper's grace is published twice (the API's batch job and
    # the sweeper's); a row one run has claimed must not be worked by the other as well.
    outcomes = [await _record(services, _event(acme, f"held_{i}")) for i in range(3)]
    await services.queue.redis.flushdb()
    ids = [o.record_id for o in outcomes]
    settings = services.settings
    async with services.engine.begin() as conn:
        assert await work.claim(conn, "outbox", ids[0], lease_s=settings.worker_lease_s)
    ctx: dict[str, Any] = {"services": services, "handlers": {}}
    assert await process_records(ctx, [str(i) for i in ids[:2]]) == "processed 1 of 2"
    # Rows the sweeper republishes are held for a sweep interval: its own jobs take them.
    async with services.engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET available_at = now() - interval '1 hour'"))
        swept = await work.sweep(
            conn, "outbox", grace_s=0, batch=10, hold_s=float(settings.sweep_interval_s)
        )
    assert sorted(swept) == sorted([ids[0], ids[2]])
    assert await process_records(ctx, [str(i) for i in swept]) == "processed 2 of 2"
    async with services.engine.connect() as conn:
        result = await conn.execute(text("SELECT record_id, attempts FROM outbox"))
        attempts = {row.record_id: row.attempts for row in result}
    assert attempts == {ids[0]: 2, ids[1]: 1, ids[2]: 1}


async def test_a_record_that_fails_in_a_batch_continues_alone_and_spares_the_rest(
    services: Services, acme: Any
) -> None:
    outcomes = [await _record(services, _event(acme, f"mixed_{i}")) for i in range(3)]
    await services.intake.drain()  # the publishes held back, made before the queue is emptied
    await services.queue.redis.flushdb()
    flaky = outcomes[1].record_id

    async def handler(_: Services, record: Any) -> None:
        if record.id == flaky:
            raise ConnectionError("ATS unreachable")

    ctx: dict[str, Any] = {"services": services, "handlers": {"keldair": handler}}
    assert await process_records(ctx, [str(o.record_id) for o in outcomes]) == "processed 2 of 3"
    async with services.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT record_id, done_at IS NOT NULL AS done, last_error FROM outbox")
            )
        ).all()
    done = {r.record_id: r.done for r in rows}
    assert done == {o.record_id: o.record_id != flaky for o in outcomes}
    # The failed one retries as a job of its own, deferred by its backoff.
    assert await arq_queue(services.queue.redis) == [f"record:{flaky}"]
    score = await services.queue.redis.zscore("arq:queue", f"record:{flaky}")
    assert score is not None and score > time.time() * 1000


async def test_concurrent_batch_jobs_naming_the_same_candidates_both_finish(
    services: Services, acme: Any
) -> None:
    # A storm: two batches about the same five candidates, named in opposite orders, finish
    # at once. Their transactions upsert the same rows (in one global order, so they wait for
    # each other rather than deadlock); both finish, nothing is sent back to run alone.
    people = [f"cand_{i}" for i in range(5)]
    first = [await _record(services, _event(acme, f"storm_a_{i}")) for i in range(5)]
    second = [await _record(services, _event(acme, f"storm_b_{i}")) for i in range(5)]
    named = {o.record_id: people[i] for i, o in enumerate(first)}
    named |= {o.record_id: people[4 - i] for i, o in enumerate(second)}
    await services.intake.drain()
    await services.queue.redis.flushdb()

    async def handler(_: Services, record: Any) -> Enrichment:
        # Every record names all five, its own first: each batch locks them in another order.
        own = named[record.id]
        order = [own, *(p for p in people if p != own)]
        if record.id in {o.record_id for o in second}:
            order.reverse()
        now = datetime.now(UTC)
        return Enrichment(
            "candidate.updated",
            resources=[
                Resource("candidate", p, {"first_name": p}, {"id": p}, now, version=1)
                for p in order
            ],
        )

    ctx: dict[str, Any] = {"services": services, "handlers": {"keldair": handler}}
    results = await asyncio.gather(
        process_records(ctx, [str(o.record_id) for o in first]),
        process_records(ctx, [str(o.record_id) for o in second]),
    )
    assert list(results) == ["processed 5 of 5", "processed 5 of 5"]
    # Nothing was sent back to run on its own.
    assert await arq_queue(services.queue.redis) == []
    async with services.engine.connect() as conn:
        candidates = (await conn.execute(text("SELECT count(*) FROM candidate"))).scalar_one()
    assert candidates == 5


async def test_under_load_batches_share_a_publish_and_answers_do_not_wait_for_it(
    services: Services, acme: Any, counted: list[int]
) -> None:
    # Three waves of concurrent events, each after the last was answered: the first wave's
    # batch publishes at once; the later ones, within the publish interval (long here, so a
    # slow machine cannot stretch the waves past it), are answered before their jobs are
    # published, and are then published together, naming every record once
    # (app.intake.publisher).
    intake = Intake(services.autocommit, services.queue, db_timeout_s=5.0, publish_interval_s=1.0)
    outcomes: list[Outcome] = []
    for wave in range(3):
        events = [_event(acme, f"wave_{wave}_{i}") for i in range(20)]
        outcomes += await asyncio.gather(
            *(
                intake.record(e, answer_for=lambda rid: json_answer(200, {}), deadline=Deadline(10))
                for e in events
            )
        )
        if wave == 0:
            first_jobs = await arq_queue(services.queue.redis)
    assert all(o.queued and not o.duplicate for o in outcomes)
    # Answered, and only the first wave's records are queued yet.
    assert await arq_queue(services.queue.redis) == first_jobs
    named = await queued_records(services.queue.redis, at_least=60)
    assert sorted(named) == sorted(str(o.record_id) for o in outcomes)
    jobs = await arq_queue(services.queue.redis)
    assert len(jobs) == len(first_jobs) + 1 < len(counted), (jobs, counted)
    await intake.drain()


async def test_events_recorded_in_the_callers_transaction_share_one_statement(
    services: Services, acme: Any, counted: list[int]
) -> None:
    # Intake.record_many (a poll page, a Cloud Elements notification): one insert for all, an
    # outcome per event in order; a repeat within the batch or of an earlier record is a
    # duplicate of the first record, and only the new records get a job.
    earlier = await _record(services, _event(acme, "k-0"))
    events = [_event(acme, k) for k in ("k-1", "k-2", "k-1", "k-0")]
    async with services.engine.begin() as conn:
        outcomes = await services.intake.record_many(events, conn=conn)
    assert counted == [1, 4]
    assert [o.duplicate for o in outcomes] == [False, False, True, True]
    assert outcomes[2].record_id == outcomes[0].record_id
    assert outcomes[3].record_id == earlier.record_id
    assert await services.intake.publish_many(events, outcomes) == 2
    assert set(await arq_queue(services.queue.redis)) == {
        f"record:{o.record_id}" for o in (earlier, outcomes[0], outcomes[1])
    }
