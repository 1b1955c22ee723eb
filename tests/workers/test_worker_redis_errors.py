"""Which Redis errors the worker rides out (app/workers/resilient.py), without a real outage:
the moment a connection is lost decides which exception redis-py raises."""

from __future__ import annotations

import pytest
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError

from app.workers.resilient import ResilientWorker, redis_down


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
