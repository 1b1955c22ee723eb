"""Group commit under a busy event loop: requests that reach the writers in the same turn of
the loop share one batch, even while a writer is free."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.platform.group_commit import GroupCommit


async def test_requests_of_one_turn_share_a_batch_though_writers_are_free() -> None:
    batches_seen: list[list[int]] = []

    async def write(items: Sequence[int]) -> list[int | BaseException]:
        batches_seen.append(list(items))
        return [i * 10 for i in items]

    batches: GroupCommit[int, int] = GroupCommit(write, writers=2, max_batch=256)
    assert await asyncio.gather(*(batches.submit(i, None) for i in range(5))) == [
        0,
        10,
        20,
        30,
        40,
    ]
    # One statement for all five, not the first two alone on the two free writers.
    assert batches_seen == [[0, 1, 2, 3, 4]]


async def test_more_than_a_batch_in_one_turn_starts_every_free_writer() -> None:
    batches_seen: list[list[int]] = []
    both_started = asyncio.Event()

    async def write(items: Sequence[int]) -> list[int | BaseException]:
        batches_seen.append(list(items))
        if len(batches_seen) == 2:
            both_started.set()
        await both_started.wait()
        return list(items)

    batches: GroupCommit[int, int] = GroupCommit(write, writers=2, max_batch=3)
    assert await asyncio.gather(*(batches.submit(i, None) for i in range(7))) == list(range(7))
    assert batches_seen == [[0, 1, 2], [3, 4, 5], [6]]


async def test_drain_waits_for_a_start_still_due() -> None:
    written: list[int] = []

    async def write(items: Sequence[int]) -> list[int | BaseException]:
        written.extend(items)
        return list(items)

    batches: GroupCommit[int, int] = GroupCommit(write, writers=1, max_batch=10)
    pending = asyncio.ensure_future(batches.submit(1, None))
    await asyncio.sleep(0)  # the submit has run; its batch starts on the next turn
    await batches.drain()
    assert written == [1]
    assert await pending == 1
