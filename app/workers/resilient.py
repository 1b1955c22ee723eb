"""An arq worker that waits for Redis instead of dying when it goes away.

arq 0.28 lets a Redis error escape ``Worker.main()`` (from its poll loop, or re-raised from a
job's bookkeeping), and ``hirehook worker`` then exits. Redis only speeds things up here: the
outbox in PostgreSQL is the truth. So this worker keeps the jobs it is running, retries Redis
with capped backoff, and logs once that Redis is gone (``worker.redis_unavailable``) and once
that it is back (``worker.redis_restored``); what Redis lost meanwhile the sweeper republishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import structlog
from arq.connections import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from app.platform.backoff import Backoff

log = structlog.get_logger(__name__)

# Refused, reset, timed out, or still loading its data after a restart (BusyLoadingError is
# a ConnectionError). Anything else from Redis is a bug and still ends the worker.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)
# What the except clauses catch; redis_down() then tells an outage from anything else.
_CAUGHT: tuple[type[BaseException], ...] = (*REDIS_DOWN, WatchError)
BACKOFF = Backoff(base_s=0.2, cap_s=5.0)

# arq's start of one job (WATCH the in-progress key, EXISTS, ZSCORE, then MULTI, PSETEX, EXEC:
# four round trips) as one atomic script: same keys, same checks, same in-progress key. The
# job's score if it was started, nothing if it is running elsewhere, gone, or not yet due.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


def redis_down(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis could not be reached.

    redis-py reports a connection lost while a key is watched (arq watches each job it
    starts) as a ``WatchError`` raised while handling the connection error, not as that
    error: the outage is then its context.
    """
    if isinstance(exc, REDIS_DOWN):
        return True
    return isinstance(exc, WatchError) and isinstance(exc.__context__, REDIS_DOWN)


class ResilientWorker(Worker):
    """``arq.worker.Worker`` that rides out Redis outages, at start-up and while polling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Monotonic time Redis was first found unreachable; None while it answers.
        self.redis_down_since: float | None = None
        self._failures = 0
        # Registered on first use; called on whichever pool the worker holds then.
        self._script: AsyncScript | None = None

    async def main(self) -> None:
        """Wait for Redis, then run arq's loop."""
        if self._pool is None:
            self._pool = await self._connect()
        await super().main()

    async def _connect(self) -> ArqRedis:
        assert self.redis_settings is not None  # set whenever no pool was given
        # No retries inside arq: the backoff here replaces them.
        once = dataclasses.replace(self.redis_settings, conn_retries=0)
        while True:
            try:
                pool = await create_pool(
                    once,
                    job_serializer=self.job_serializer,
                    job_deserializer=self.job_deserializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
            except REDIS_DOWN as exc:
                await self._redis_down(exc)
            else:
                self._redis_up()
                return pool

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except _CAUGHT as exc:
            if not redis_down(exc):
                raise
            # Nothing is started while Redis is away; running jobs go on (PostgreSQL only).
            await self._redis_down(exc)
        else:
            self._redis_up()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start, in one Redis round trip per job (:data:`_START`), without the jobs
        this process is running already.

        arq's own start watches the job's in-progress key and takes four round trips per
        job; with batch jobs of a dozen events that was about a twentieth of a worker's CPU
        per event.
        A running job stays in the queue until it ends, so arq re-checks it on every poll
        only to find its own in-progress key: those are skipped here. Whoever runs a job
        elsewhere is still found by the script's check.
        """
        running = self.tasks
        for job_id_b in job_ids:
            job_id = job_id_b.decode()
            task = running.get(job_id)
            if task is not None and not task.done():
                continue
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            try:
                score = await self._start_script(
                    keys=[in_progress_key_prefix + job_id, self.queue_name],
                    args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
                    client=self.pool,
                )
            except BaseException:
                # Not started: its slot is free again (arq's start kept it on a Redis error).
                self._release_sem_dec_counter_on_complete()
                raise
            if score is None:
                # Running elsewhere, finished, or re-enqueued with a delay by another worker.
                self._release_sem_dec_counter_on_complete()
                continue
            started = self.loop.create_task(self.run_job(job_id, int(float(score))))
            started.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = started

    @property
    def _start_script(self) -> AsyncScript:
        if self._script is None:
            self._script = self.pool.register_script(_START)
        return self._script

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's run, whose Redis bookkeeping may fail without ending the worker."""
        try:
            await super().run_job(job_id, score)
        except _CAUGHT as exc:
            if not redis_down(exc):
                raise
            # Before the function ran, the job waits in Redis (or, if Redis lost it, in the
            # outbox for the sweeper); after, its effects are committed and a rerun is a no-op.
            log.warning("worker.job_bookkeeping_failed", job_id=job_id, error=type(exc).__name__)

    async def close(self) -> None:
        """arq's close; with Redis away, still run on_shutdown and release the pool."""
        # arq's stop signal cancels the running jobs, and its close() gathers them without
        # return_exceptions: a job cancelled while finishing re-raised CancelledError out of
        # close() and a worker told to stop exited 1. Those jobs are over (redone from Redis
        # or the outbox); only the ones still running are waited for.
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks = {job: task for job, task in self.tasks.items() if not task.cancelled()}
        try:
            await super().close()
        except _CAUGHT as exc:
            if not redis_down(exc):
                raise
            # arq failed deleting its health key (it expires on its own).
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            if self._pool is not None:
                await self._pool.close(close_connection_pool=True)
                self._pool = None

    async def _redis_down(self, exc: BaseException) -> None:
        if self.redis_down_since is None:
            self.redis_down_since = time.monotonic()
            log.warning("worker.redis_unavailable", error=type(exc).__name__, detail=str(exc))
        self._failures += 1
        delay = BACKOFF.delay(self._failures)
        await asyncio.sleep(delay)

    def _redis_up(self) -> None:
        if self.redis_down_since is not None:
            outage_s = time.monotonic() - self.redis_down_since
            log.info("worker.redis_restored", outage_s=round(outage_s, 1))
        self.redis_down_since = None
        self._failures = 0
