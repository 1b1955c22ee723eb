"""A batch's publish to Redis on the request path: no task per socket write, and still
bounded when Redis hangs (the 2xx waits for the attempt; a failure is left to the sweeper)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Generator
from typing import Any

from arq.constants import default_queue_name
from redis.asyncio import Redis

from app.platform.ids import uuid7
from app.platform.queue import JOB_BATCH, Queue, create_redis
from app.platform.settings import Settings


async def _calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


async def test_a_batch_publish_is_one_round_trip_and_survives_a_flushed_script(
    settings: Settings,
) -> None:
    queue = Queue(create_redis(settings.redis_dsn, 0.5), 0.5)
    admin = Redis.from_url(settings.redis_dsn)
    try:
        assert await queue.enqueue_batch([uuid7(), uuid7()]) == 2
        before = await _calls(admin)
        assert await queue.enqueue_batch([uuid7(), uuid7()]) == 2
        # Two jobs of one batch: still one write, one EVALSHA each.
        assert await queue.enqueue_batch([uuid7() for _ in range(JOB_BATCH + 1)]) == JOB_BATCH + 1
        after = await _calls(admin)
        # No SCRIPT EXISTS before each publish (redis-py's pipeline asks before every execute).
        assert after.get("script", 0) == before.get("script", 0)
        assert after["evalsha"] - before["evalsha"] == 3

        # Redis restarted or flushed its scripts: the publish loads the script and goes on.
        await admin.script_flush()
        ids = [uuid7() for _ in range(JOB_BATCH + 1)]
        assert await queue.enqueue_batch(ids) == JOB_BATCH + 1
        assert await queue.enqueue_batch([uuid7(), uuid7()]) == 2
        await admin.script_flush()
        assert await queue.enqueue_record(ids[0]) == "queued"
        # The repeated calls after NOSCRIPT made no second job.
        assert await queue.enqueue_batch(ids) == 0
        assert await admin.zcard(default_queue_name) > 0
    finally:
        await admin.aclose()
        await queue.close()


async def test_a_batch_publish_starts_no_task_per_socket_write(settings: Settings) -> None:
    queue = Queue(create_redis(settings.redis_dsn, 0.5), 0.5)
    loop = asyncio.get_running_loop()
    started: list[Coroutine[Any, Any, Any] | Generator[Any, None, Any]] = []

    def counting(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        started.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    try:
        # Connected first: the count is of a publish on a kept-alive connection.
        assert await queue.enqueue_batch([uuid7(), uuid7()]) == 2
        previous = loop.get_task_factory()
        loop.set_task_factory(counting)
        try:
            assert await queue.enqueue_batch([uuid7(), uuid7(), uuid7()]) == 3
            assert await queue.enqueue_record(uuid7()) == "queued"
        finally:
            loop.set_task_factory(previous)
        # redis-py with a socket timeout wraps every write in asyncio.wait_for: on Python
        # 3.11 a task each. The publish's own asyncio.timeout bounds it instead.
        assert started == []
    finally:
        await queue.close()


async def test_a_hanging_redis_fails_the_publish_within_its_bound() -> None:
    # Accepts connections and never answers: a wedged server or a dropped route.
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = Queue(create_redis(f"redis://127.0.0.1:{port}/0", 0.2), 0.2)
    try:
        started = time.monotonic()
        assert await queue.enqueue_batch([uuid7(), uuid7()]) == 0
        assert await queue.enqueue_record(uuid7()) == "failed"
        await queue.count_duplicates({(1, "keldair"): 2})
        # Bounds of 0.4 s each (twice the timeout); generous for a loaded machine.
        assert time.monotonic() - started < 10
    finally:
        await queue.close()
        server.close()
