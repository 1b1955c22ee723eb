"""Which Redis errors the worker rides out (app/workers/resilient.py), without a real outage:
the moment a connection is lost decides which exception redis-py raises."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError

from app.platform.queue import create_redis
from app.platform.settings import Settings
from app.workers.resilient import ResilientWorker, redis_down
from app.workers.settings import create_worker


async def noop(ctx: dict[str, object]) -> None:
    del ctx


def lost_while_watching() -> WatchError:
    """What redis-py raises when the connection drops while a key is watched, as arq's
    start_jobs watches each job's in-progress key."""
    try:
        try:
            raise RedisConnectionError("Error while reading from 127.0.0.1:6379 : (104, reset)")
        except RedisConnectionError:
            raise WatchError(  # noqa: B904 - raised as redis-py raises it, the error its context
                "A ConnectionError occurred on while watching one or more keys"
            )
    except WatchError as exc:
        return exc


def test_a_connection_lost_while_watching_is_an_outage() -> None:
    assert redis_down(RedisConnectionError("refused"))
    assert redis_down(ConnectionRefusedError())
    assert redis_down(lost_while_watching())
    # A watched key that changed is contention, not an outage; other errors are bugs.
    assert not redis_down(WatchError("Watched variable changed."))
    assert not redis_down(ResponseError("WRONGTYPE"))


async def test_the_poll_loop_rides_out_a_connection_lost_while_watching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def poll(self: Worker) -> None:
        raise lost_while_watching()

    monkeypatch.setattr(Worker, "_poll_iteration", poll)
    worker = ResilientWorker(functions=[noop], redis_settings=RedisSettings(port=1))
    await worker._poll_iteration()
    assert worker.redis_down_since is not None


async def test_any_other_redis_error_still_ends_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    async def poll(self: Worker) -> None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    monkeypatch.setattr(Worker, "_poll_iteration", poll)
    worker = ResilientWorker(functions=[noop], redis_settings=RedisSettings(port=1))
    with pytest.raises(ResponseError):
        await worker._poll_iteration()


async def test_a_job_cancelled_by_the_stop_signal_does_not_fail_the_shutdown(
    settings: Settings,
) -> None:
    """arq's SIGTERM handler cancels the running jobs, and its close() gathered them without
    return_exceptions: one cancelled while it finished re-raised CancelledError out of close(),
    so a worker told to stop exited 1 (its job is redone from Redis or the outbox)."""
    worker = create_worker(settings, handle_signals=False)
    # As main() leaves it once started: close() gathers the jobs only with a pool.
    worker._pool = create_redis(settings.redis_dsn, 0.5)

    async def finishing() -> None:
        await asyncio.sleep(60)

    job = asyncio.create_task(finishing())
    worker.tasks["job-1"] = job
    await asyncio.sleep(0)
    job.cancel()
    await worker.close()
    assert job.cancelled()
