"""Telling the workers about committed records: at once while the service is quiet, together
under load.

A committed record is safe in its outbox row whatever happens to its job (the sweeper
republishes what Redis never got), so publishing is a hint that only sets how soon a worker
starts. Each publish costs a Redis round trip in the API and, in the worker, a job's fixed
costs (arq's start, run and finish; a claim and a finish statement). Under load the API
commits a batch every few milliseconds, and one publish per batch made jobs of the batch's
size (about ten records at 2,000 events/s). So a publish starts at once only when none is in
flight and the last one started at least ``interval_s`` ago; records committed otherwise join
the next publish, due ``interval_s`` after the last one started, and their requests are
answered without waiting for it. A quiet service therefore answers after its job is queued,
as before; a busy one publishes at most every ``interval_s``, each job carrying what
committed since (up to arq's job size, app.platform.queue.JOB_BATCH, per job).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

Enqueue = Callable[[list[uuid.UUID]], Coroutine[Any, Any, int]]


class Publisher:
    """The API's publishes of committed records' jobs (see the module's docstring)."""

    def __init__(self, enqueue: Enqueue, *, interval_s: float) -> None:
        # ``enqueue`` never raises and its Redis wait is bounded (Queue.enqueue_batch), so a
        # publish always ends soon.
        self._enqueue = enqueue
        self._interval_s = interval_s
        # Records waiting for the next publish, with the request id of each lone record.
        self._pending: list[tuple[list[uuid.UUID], str | None]] = []
        self._due: asyncio.TimerHandle | None = None
        self._in_flight: asyncio.Task[int] | None = None
        self._last_start = -math.inf
        # Held until done (asyncio keeps only weak references) and awaited by drain().
        self._tasks: set[asyncio.Task[int]] = set()

    def publish(
        self, record_ids: list[uuid.UUID], request_id: str | None
    ) -> asyncio.Task[int] | None:
        """Publish committed ``record_ids``: the publish's task when it starts at once (the
        caller may wait for it), None when they join the next one (nobody waits for it).

        ``request_id`` is that of the request whose record this is when there is one record;
        a job of one record carries it into the worker's log lines.
        """
        now = asyncio.get_running_loop().time()
        if (
            self._in_flight is None
            and not self._pending
            and now - self._last_start >= self._interval_s
        ):
            return self._start(record_ids, request_id)
        self._pending.append((record_ids, request_id))
        self._schedule()
        return None

    def _start(self, record_ids: list[uuid.UUID], request_id: str | None) -> asyncio.Task[int]:
        loop = asyncio.get_running_loop()
        # A job of one record carries its request's id; a batch job serves many requests and
        # carries none. Never the id of the request whose context this happens to run in.
        context = contextvars.Context()
        if request_id is not None and len(record_ids) == 1:
            context.run(structlog.contextvars.bind_contextvars, request_id=request_id)
        self._last_start = loop.time()
        task = loop.create_task(self._enqueue(record_ids), context=context)
        self._in_flight = task
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if self._in_flight is task:
            self._in_flight = None
        self._schedule()

    def _schedule(self) -> None:
        if not self._pending or self._in_flight is not None or self._due is not None:
            return
        loop = asyncio.get_running_loop()
        self._due = loop.call_at(max(loop.time(), self._last_start + self._interval_s), self._flush)

    def _flush(self) -> None:
        self._due = None
        if self._in_flight is not None or not self._pending:
            return  # the publish in flight schedules the next when it ends
        pending, self._pending = self._pending, []
        record_ids = [rid for ids, _ in pending for rid in ids]
        self._start(record_ids, pending[0][1] if len(pending) == 1 else None)

    async def drain(self) -> None:
        """Publish what is waiting, now, and wait for every publish (on shutdown; tests)."""
        while self._pending or self._tasks:
            if self._due is not None:
                self._due.cancel()
                self._due = None
            if self._pending and self._in_flight is None:
                self._flush()
            await asyncio.gather(*self._tasks, return_exceptions=True)
