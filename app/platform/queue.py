"""Publishing jobs to arq. Best effort by design: the outbox in PostgreSQL is the truth."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import structlog
from arq.connections import ArqRedis
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import NoScriptError, RedisError

log = structlog.get_logger(__name__)

PROCESS_RECORD = "process_record"
# Several committed records in one job: what the API publishes for a group-committed batch.
PROCESS_RECORDS = "process_records"
# Records per batch job: small enough that one job stays far inside its timeout.
JOB_BATCH = 64
DELIVER_RECORD = "deliver_record"
# Several records' deliveries in one job: what one finishing transaction owes.
DELIVER_RECORDS = "deliver_records"
# One connection's due resources polled (app.workers.poller).
POLL_CONNECTION = "poll_connection"

# arq's enqueue_job (WATCH, EXISTS, MULTI, PSETEX, ZADD, EXEC: four round trips) as one
# atomic script: same keys, same serialization, so workers see an ordinary arq job.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""
Published = Literal["queued", "exists", "failed"]

# Duplicates are counted per tenant, source and hour in Redis, not on the record: a write to
# the record would add a commit (a WAL flush) to the duplicate path, which is otherwise a
# read, and a retry storm is all duplicates. Kept eight days.
DUPLICATES_TTL_S = 8 * 24 * 3600


def duplicates_key(tenant_id: int, source: str, hour: int) -> str:
    """The counter of duplicates of one tenant and source in one hour (Unix hours)."""
    return f"hirehook:duplicates:{tenant_id}:{source}:{hour}"


# arq pickles jobs unless told otherwise, and unpickling runs code: anyone who can write to
# Redis would run code in every worker. Jobs are JSON instead, and every ArqRedis and Worker
# gets this pair. A job blob that is not JSON (a pickle included) fails to deserialize and
# arq drops the job without running it; the sweeper republishes the record from the outbox.
def serialize(data: dict[str, Any]) -> bytes:
    """An arq job or result as JSON."""
    return orjson.dumps(data, default=_describe)


def deserialize(blob: bytes) -> dict[str, Any]:
    """An arq job or result from JSON; anything else raises, and arq refuses the job."""
    data = orjson.loads(blob)
    if not isinstance(data, dict):
        raise TypeError(f"an arq job is a JSON object, not {type(data).__name__}")
    if isinstance(data.get("a"), list):
        # arq hands a job's positional arguments around as a tuple.
        data["a"] = tuple(data["a"])
    return data


def _describe(value: object) -> str:
    # arq serializes a failed job's exception as its result even when no result is kept
    # (keep_result=0 here); without this every failure would also log a serialization error.
    # Anything else that is not JSON is a bug at the enqueueing side, so it still raises.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def carried_context() -> dict[str, str]:
    """What a job inherits from the code that enqueues it: the request id bound to the log
    context (app.platform.logs), so a job's lines name the request that recorded its record. Jobs
    republished by the sweeper carry none."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {"request_id": request_id} if isinstance(request_id, str) else {}


def record_job_id(record_id: uuid.UUID | str) -> str:
    """One arq job id per record, so a second enqueue of a queued job is a no-op."""
    return f"record:{record_id}"


def delivery_job_id(record_id: uuid.UUID | str) -> str:
    """One arq job id per record's delivery."""
    return f"delivery:{record_id}"


def poll_job_id(connection_id: int) -> str:
    """One queued poll job per connection."""
    return f"poll:{connection_id}"


def _batch_jobs(
    prefix: str, record_ids: Sequence[uuid.UUID | str]
) -> list[tuple[str, tuple[Any, ...], int]]:
    """``(job id, arguments, records)`` of batch jobs of up to :data:`JOB_BATCH` records; a
    job's id names its prefix, first record and size."""
    chunks = [
        [str(r) for r in record_ids[start : start + JOB_BATCH]]
        for start in range(0, len(record_ids), JOB_BATCH)
    ]
    return [(f"{prefix}:{chunk[0]}:{len(chunk)}", (chunk,), len(chunk)) for chunk in chunks]


def create_redis(url: str, timeout_s: float) -> ArqRedis:
    """A lazily connecting client: the API starts, and answers, while Redis is away."""
    pool = ConnectionPool.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, max_connections=64
    )
    return ArqRedis(connection_pool=pool, job_serializer=serialize, job_deserializer=deserialize)


def _untimed(redis: Redis) -> Redis:
    """A client of the same server, credentials and TLS as ``redis`` whose connections set no
    socket timeout, for calls every caller bounds with ``asyncio.timeout``.

    With a socket timeout redis-py sends every write under its own ``asyncio.wait_for``, which
    on Python 3.11 is a task per write: most of what a batch's publish cost the API. The
    connect keeps its timeout; a write or read that hangs is cancelled by the caller's bound,
    and redis-py drops that connection.
    """
    pool = redis.connection_pool
    return Redis(
        connection_pool=ConnectionPool(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **{**pool.connection_kwargs, "socket_timeout": None},
        )
    )


class Queue:
    """The API's handle on the job queue."""

    def __init__(self, redis: ArqRedis, timeout_s: float) -> None:
        self.redis = redis
        self._timeout_s = timeout_s
        # The request path's publishes and counts, each under its own asyncio.timeout. Other
        # users of ``redis`` (rate budget, cache, guard, workers) keep its socket timeout.
        self._publisher = _untimed(redis)
        self._script = self._publisher.register_script(_ENQUEUE)

    async def enqueue_record(
        self, record_id: uuid.UUID | str, *, defer_s: float = 0.0
    ) -> Published:
        """Ask a worker to process a committed record (not before ``defer_s`` from now).

        ``exists`` means the job is already queued or running under the same id.
        """
        return await self._enqueue(
            PROCESS_RECORD, record_id, record_job_id(record_id), defer_s=defer_s
        )

    async def enqueue_batch(self, record_ids: Sequence[uuid.UUID]) -> int:
        """Publish committed records: a lone record as its own job (``record:<id>``), more as
        jobs of up to :data:`JOB_BATCH` records each, all in one round trip; how many of the
        records were newly published.

        A batch job's id names its first record; the sweeper republishes any record of it
        that is not done in time as a job of its own.
        """
        if len(record_ids) == 1:
            return int(await self.enqueue_record(record_ids[0]) == "queued")
        jobs = _batch_jobs("records", record_ids)
        return await self._enqueue_many(PROCESS_RECORDS, jobs, timeout_s=self._timeout_s * 2)

    async def enqueue_delivery(
        self, record_id: uuid.UUID | str, *, defer_s: float = 0.0
    ) -> Published:
        """Ask a worker to deliver a committed record's normalized event (not before
        ``defer_s`` from now)."""
        return await self._enqueue(
            DELIVER_RECORD, record_id, delivery_job_id(record_id), defer_s=defer_s
        )

    async def enqueue_poll(self, connection_id: int) -> bool:
        """Ask a worker to poll a connection's due resources; False if a poll of it is queued
        or running already. Raises Redis errors: the poll cron tries again next tick."""
        job = await self.redis.enqueue_job(
            POLL_CONNECTION, connection_id, _job_id=poll_job_id(connection_id)
        )
        return job is not None

    async def enqueue_records(self, record_ids: Sequence[uuid.UUID | str]) -> int:
        """Publish many records' jobs in one round trip; how many were newly queued. Each job
        carries the context of the code enqueueing it (:func:`carried_context`)."""
        jobs = [(record_job_id(r), (str(r),), 1) for r in record_ids]
        return await self._enqueue_many(
            PROCESS_RECORD, jobs, timeout_s=self._timeout_s * 4, kwargs=carried_context()
        )

    async def enqueue_deliveries(self, record_ids: Sequence[uuid.UUID | str]) -> int:
        """Publish owed deliveries as :func:`enqueue_batch` publishes records: a lone one as
        its own job (``delivery:<id>``), more as jobs of up to :data:`JOB_BATCH` each, in one
        round trip; how many were newly published."""
        if len(record_ids) == 1:
            return int(await self.enqueue_delivery(record_ids[0]) == "queued")
        jobs = _batch_jobs("deliveries", record_ids)
        return await self._enqueue_many(DELIVER_RECORDS, jobs, timeout_s=self._timeout_s * 4)

    async def _enqueue_many(
        self,
        function: str,
        jobs: Sequence[tuple[str, tuple[Any, ...], int]],
        *,
        timeout_s: float,
        kwargs: Mapping[str, Any] | None = None,
    ) -> int:
        """Publish ``(job id, arguments, records it covers)`` jobs in one round trip; how many
        records were newly queued."""
        if not jobs:
            return 0
        now_ms = int(time.time() * 1000)
        calls = [
            (
                [job_key_prefix + job_id, result_key_prefix + job_id, default_queue_name],
                [
                    expires_extra_ms,
                    serialize_job(
                        function, args, dict(kwargs or {}), None, now_ms, serializer=serialize
                    ),
                    now_ms,
                    job_id,
                ],
            )
            for job_id, args, _ in jobs
        ]
        try:
            async with asyncio.timeout(timeout_s):
                results = await self._run_script(calls)
        except (RedisError, OSError, TimeoutError) as exc:
            # Still in the outbox: the next sweep publishes them.
            log.warning("queue.enqueue_failed", function=function, error=type(exc).__name__)
            return 0
        return sum(n for (_, _, n), created in zip(jobs, results, strict=True) if created)

    async def _run_script(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The enqueue script once per ``(keys, arguments)``, in one round trip; its results.

        By its SHA, without asking Redis first whether it knows the script (a pipeline holding
        a registered Script sends SCRIPT EXISTS before every execute: a second round trip per
        batch). A Redis that lost it (restarted, flushed) answers NOSCRIPT: the script is
        loaded and the calls sent once more; the script's EXISTS check makes that harmless.
        """
        sha = self._script.sha
        for attempt in range(2):
            try:
                if len(calls) == 1:
                    # A lone call: the script object sends EVALSHA and loads it on NOSCRIPT.
                    keys, args = calls[0]
                    return [await self._script(keys=keys, args=args)]
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    return list(await pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                sha = self._script.sha = await self._publisher.script_load(_ENQUEUE)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _enqueue(
        self, function: str, record_id: uuid.UUID | str, job_id: str, *, defer_s: float = 0.0
    ) -> Published:
        now_ms = int(time.time() * 1000)
        score = now_ms + int(defer_s * 1000)
        job = serialize_job(
            function, (str(record_id),), carried_context(), None, score, serializer=serialize
        )
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                created = await self._script(
                    keys=[job_key_prefix + job_id, result_key_prefix + job_id, default_queue_name],
                    # A deferred job must outlive its wait: arq expires it with the same margin.
                    args=[expires_extra_ms + score - now_ms, job, score, job_id],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            # The sweeper will publish it from the outbox once Redis answers again.
            log.warning(
                "queue.enqueue_failed",
                function=function,
                record_id=str(record_id),
                error=type(exc).__name__,
            )
            return "failed"
        return "queued" if created else "exists"

    async def count_duplicate(self, tenant_id: int, source: str) -> None:
        """Count one duplicate (best effort: a lost count, never a delayed answer for long)."""
        await self.count_duplicates({(tenant_id, source): 1})

    async def count_duplicates(self, counts: Mapping[tuple[int, str], int]) -> None:
        """Count a batch's duplicates per (tenant id, source) in one round trip (best effort)."""
        if not counts:
            return
        hour = int(time.time()) // 3600
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for (tenant_id, source), count in counts.items():
                        key = duplicates_key(tenant_id, source, hour)
                        pipe.incrby(key, count)
                        pipe.expire(key, DUPLICATES_TTL_S)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("queue.duplicate_not_counted", error=type(exc).__name__)

    async def duplicates(self, tenant_id: int, source: str, hours: Sequence[int]) -> int | None:
        """Duplicates counted in these hours; None if Redis does not answer."""
        if not hours:
            return 0
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                counts = await self.redis.mget(
                    [duplicates_key(tenant_id, source, h) for h in hours]
                )
        except (RedisError, OSError, TimeoutError):
            return None
        return sum(int(c) for c in counts if c is not None)

    async def oldest_queued_s(self) -> float | None:
        """When the oldest job still in the queue (waiting, deferred or running) was queued,
        in epoch seconds; None if the queue is empty or Redis does not answer."""
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                oldest = await self.redis.zrange(default_queue_name, 0, 0, withscores=True)
        except (RedisError, OSError, TimeoutError):
            return None
        return float(oldest[0][1]) / 1000 if oldest else None

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                return bool(await self.redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Release connections."""
        # A client built on an explicit pool leaves the pool open unless told otherwise.
        await self._publisher.aclose(close_connection_pool=True)
        await self.redis.aclose(close_connection_pool=True)
