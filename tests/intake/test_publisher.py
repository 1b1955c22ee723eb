"""The intake's publisher: a quiet service publishes at once and may wait for it; a busy one
publishes at most every interval, each publish carrying what committed since."""

from __future__ import annotations

import asyncio
import uuid

import structlog

from app.intake.publisher import Publisher
from app.platform.ids import uuid7


async def until_published(queue: FakeQueue, n: int, timeout_s: float = 5.0) -> None:
    """Until ``queue`` has seen ``n`` publishes (the held-back ones run on a timer)."""
    async with asyncio.timeout(timeout_s):
        while len(queue.calls) < n:
            queue.called.clear()
            await queue.called.wait()


class FakeQueue:
    """Queue.enqueue_batch's stand-in: remembers each publish (its records, the request id
    bound in its context, when it started) and holds it until released when ``slow``."""

    def __init__(self, *, slow: bool = False) -> None:
        self.calls: list[tuple[list[uuid.UUID], object, float]] = []
        self.release = asyncio.Event()
        self.called = asyncio.Event()
        if not slow:
            self.release.set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def enqueue_batch(self, record_ids: list[uuid.UUID]) -> int:
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        self.calls.append((list(record_ids), request_id, asyncio.get_running_loop().time()))
        self.called.set()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return len(record_ids)


async def test_a_quiet_service_publishes_at_once_and_the_caller_can_wait_for_it() -> None:
    queue = FakeQueue()
    publisher = Publisher(queue.enqueue_batch, interval_s=0.05)
    rid = uuid7()
    task = publisher.publish([rid], "req-1")
    assert task is not None
    assert await task == 1
    assert [(ids, request) for ids, request, _ in queue.calls] == [([rid], "req-1")]


async def test_under_load_publishes_are_held_back_and_made_together_once_per_interval() -> None:
    queue = FakeQueue()
    publisher = Publisher(queue.enqueue_batch, interval_s=0.3)
    first = [uuid7()]
    task = publisher.publish(first, None)
    assert task is not None
    await task
    # Committed within the interval: nobody waits for these, and they go out together.
    later = [[uuid7(), uuid7()], [uuid7()], [uuid7(), uuid7(), uuid7()]]
    assert [publisher.publish(ids, None) for ids in later] == [None, None, None]
    await asyncio.sleep(0.05)
    assert len(queue.calls) == 1
    await until_published(queue, 2)
    assert [ids for ids, _, _ in queue.calls] == [first, [r for ids in later for r in ids]]
    # Not before the interval had passed since the first publish started.
    assert queue.calls[1][2] - queue.calls[0][2] >= 0.3 - 0.01


async def test_one_publish_is_in_flight_at_a_time_and_the_next_takes_all_that_waited() -> None:
    queue = FakeQueue(slow=True)
    publisher = Publisher(queue.enqueue_batch, interval_s=0.0)
    first = publisher.publish([uuid7()], None)
    assert first is not None
    await until_published(queue, 1)
    held = [uuid7() for _ in range(5)]
    assert all(publisher.publish([rid], None) is None for rid in held)
    await asyncio.sleep(0.05)
    assert len(queue.calls) == 1  # Redis has not answered the first yet
    queue.release.set()
    await first
    await until_published(queue, 2)
    assert queue.calls[1][0] == held
    assert queue.most_in_flight == 1


async def test_a_lone_held_back_record_carries_its_request_id_and_a_batch_none() -> None:
    queue = FakeQueue()
    publisher = Publisher(queue.enqueue_batch, interval_s=0.3)
    structlog.contextvars.bind_contextvars(request_id="req-of-whoever-runs-this")
    try:
        first = publisher.publish([uuid7()], None)
        assert first is not None
        await first
        assert publisher.publish([uuid7()], "req-2") is None
        await until_published(queue, 2)  # held back, then published alone
        # Within the interval of that publish's start: held back again, these two together.
        assert publisher.publish([uuid7()], "req-3") is None
        assert publisher.publish([uuid7()], "req-4") is None
        await until_published(queue, 3)
    finally:
        structlog.contextvars.clear_contextvars()
    # Never the request id of the context the publisher happens to be called in.
    assert [request for _, request, _ in queue.calls] == [None, "req-2", None]


async def test_drain_makes_the_held_back_publish_at_once_and_waits_for_it() -> None:
    queue = FakeQueue()
    publisher = Publisher(queue.enqueue_batch, interval_s=60.0)
    first = publisher.publish([uuid7()], None)
    assert first is not None
    await first
    held = [uuid7(), uuid7()]
    assert publisher.publish(held, None) is None
    await asyncio.wait_for(publisher.drain(), timeout=1.0)
    assert [ids for ids, _, _ in queue.calls] == [queue.calls[0][0], held]
