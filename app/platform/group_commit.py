"""Group commit: requests that arrive while a batch is being written share the next batch.

A free writer starts on the next turn of the event loop, with every request that reached it
by then (up to ``max_batch``); when every writer is busy, requests queue and the next free
writer takes all of them, in one statement, one round trip and one WAL flush. Nothing waits
for a timer, so an idle service answers as fast as before (a lone request is written alone,
one loop turn later) and a busy one does a fraction of the work per request. Every request
still learns the fate of its own row only after the statement that wrote it has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")

# A batch writer: one result per item (same order), or an exception for the whole batch.
Write = Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[I, R]):
    """Collects items while ``writers`` batches are in flight and writes them together."""

    def __init__(self, write: Write[I, R], *, writers: int, max_batch: int) -> None:
        self._write = write
        self._idle = writers
        self._max_batch = max_batch
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # A start is due on the loop's next turn (see submit).
        self._starting = False

    async def submit(self, item: I, timeout_s: float | None) -> R:
        """``item``'s result once its batch is written, or :class:`TimeoutError`.

        A request that stops waiting (timeout, cancelled) does not take its item out of a
        batch already being written: it may still commit, and its sender's retry then meets
        it as a duplicate. That is why a timeout is never answered as a success.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._idle and not self._starting:
            # Not at once: the requests the loop is already working on (a CPU-bound process
            # under load has dozens ready) reach this point within the same turn and share
            # the statement, instead of the first of them taking a writer for itself alone.
            self._starting = True
            loop.call_soon(self._start_due)
        # On timeout the task is cancelled, which cancels the future it waits on, and the
        # writer skips cancelled futures. asyncio.timeout rather than wait_for: wait_for adds a
        # waiter future and a done-callback per request (3.11), ~2 % of the API's CPU per event.
        async with asyncio.timeout(timeout_s):
            return await future

    def _start_due(self) -> None:
        self._starting = False
        while self._pending and self._idle:
            self._start()

    def _start(self) -> None:
        batch = [(i, f) for i, f in self._pending[: self._max_batch] if not f.done()]
        del self._pending[: self._max_batch]
        if not batch:
            return
        self._idle -= 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results: Sequence[R | BaseException] = await self._write([i for i, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, never lost
            results = [exc] * len(batch)
        finally:
            self._idle += 1
            while self._pending and self._idle:
                self._start()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Wait for the batches in flight (on shutdown)."""
        while self._tasks or self._starting:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                # A start is due on the next turn: let it run, then wait for its batch.
                await asyncio.sleep(0)
