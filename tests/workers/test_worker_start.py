"""How the worker starts a queued job (app/workers/resilient.py, ``start_jobs``): one atomic
Redis round trip per job, with arq's checks: a job running elsewhere, gone or not yet due is
left alone, and a failed start gives its slot back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError

from app.platform.settings import Settings
from app.workers.resilient import ResilientWorker

ran: list[str] = []


async def remember(ctx: dict[str, Any], name: str) -> None:
    del ctx
    ran.append(name)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[ResilientWorker]:
    ran.clear()
    built = ResilientWorker(
        functions=[remember],
        redis_settings=RedisSettings.from_dsn(settings.redis_dsn),
        queue_name=f"test-start:{uuid.uuid4()}",
        handle_signals=False,
        burst=True,
    )
    built._pool = await built._connect()
    try:
        yield built
    finally:
        await built.pool.delete(built.queue_name)
        await built.close()


async def enqueue(pool: ArqRedis, queue: str, name: str, **options: Any) -> bytes:
    job = await pool.enqueue_job("remember", name, _queue_name=queue, _job_id=name, **options)
    assert job is not None
    return name.encode()


async def test_a_due_job_starts_in_one_round_trip_and_runs(
    worker: ResilientWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = worker.pool
    job_id = await enqueue(pool, worker.queue_name, f"due-{uuid.uuid4()}")
    commands: list[Any] = []
    execute: Any = type(pool).execute_command

    async def counted(self: ArqRedis, *args: Any, **options: Any) -> Any:
        commands.append(args[0])
        return await execute(self, *args, **options)

    monkeypatch.setattr(type(pool), "execute_command", counted)
    await worker.start_jobs([job_id])
    monkeypatch.undo()

    # EVALSHA, or SCRIPT LOAD and EVALSHA the first time this Redis sees the script.
    assert commands[-1] == "EVALSHA"
    assert commands in (["EVALSHA"], ["EVALSHA", "SCRIPT LOAD", "EVALSHA"])
    # Marked in progress as arq marks it, so no other worker starts it meanwhile.
    assert await pool.exists(in_progress_key_prefix + job_id.decode())
    await asyncio.gather(*worker.tasks.values())
    assert ran == [job_id.decode()]


async def test_a_job_running_elsewhere_or_not_yet_due_is_left_alone(
    worker: ResilientWorker,
) -> None:
    pool = worker.pool
    elsewhere = await enqueue(pool, worker.queue_name, f"elsewhere-{uuid.uuid4()}")
    await pool.psetex(in_progress_key_prefix + elsewhere.decode(), 60_000, b"1")
    later = await enqueue(pool, worker.queue_name, f"later-{uuid.uuid4()}", _defer_by=60)
    gone = f"gone-{uuid.uuid4()}".encode()
    free = worker.sem._value

    await worker.start_jobs([elsewhere, later, gone])

    assert worker.tasks == {}
    assert ran == []
    assert not await pool.exists(in_progress_key_prefix + later.decode())
    # Every slot taken for a check is given back.
    assert worker.job_counter == 0
    assert worker.sem._value == free


async def test_a_start_that_fails_gives_its_slot_back(
    worker: ResilientWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await enqueue(worker.pool, worker.queue_name, f"lost-{uuid.uuid4()}")
    free = worker.sem._value

    async def refused(self: ArqRedis, *args: Any, **options: Any) -> Any:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(type(worker.pool), "execute_command", refused)
    with pytest.raises(RedisConnectionError):
        await worker.start_jobs([job_id])
    monkeypatch.undo()

    assert worker.job_counter == 0
    assert worker.sem._value == free
    # The job is still queued for the next poll.
    await worker.start_jobs([job_id])
    await asyncio.gather(*worker.tasks.values())
    assert ran == [job_id.decode()]
