"""Every job run under its log context and metrics: the record (or connection) it concerns,
the request id that recorded it, its duration, outcome and retries."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from arq import Retry
from arq.typing import WorkerCoroutine

from app.platform.metrics import JOB_RETRIES, JOB_SECONDS

Job = Callable[..., Awaitable[Any]]

# What the jobs return; anything else is counted as "done", so a label stays in a small set.
_OUTCOMES = frozenset(
    {"processed", "delivered", "dead-letter", "already-done", "unavailable", "not-polled", "busy"}
)


def observed(name: str, job: Job, *, subject: str | None = "record_id") -> WorkerCoroutine:
    """``job`` with its first argument bound to the log context as ``subject``, the request id
    it was enqueued with (app.platform.queue.carried_context) bound as ``request_id``, and its run
    timed and counted by outcome."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        request_id = kwargs.pop("request_id", None)
        context: dict[str, Any] = {"job": name}
        if subject is not None and args:
            context[subject] = args[0]
        if request_id is not None:
            context["request_id"] = request_id
        started = time.monotonic()
        outcome = "error"
        with structlog.contextvars.bound_contextvars(**context):
            try:
                result = await job(ctx, *args, **kwargs)
            except Retry:
                outcome = "retry"
                JOB_RETRIES.labels(name).inc()
                raise
            except asyncio.CancelledError:
                # arq cancels a run that passed the job timeout.
                outcome = "cancelled"
                raise
            finally:
                if outcome in ("error", "retry", "cancelled"):
                    JOB_SECONDS.labels(name, outcome).observe(time.monotonic() - started)
            outcome = result if result in _OUTCOMES else "done"
            JOB_SECONDS.labels(name, outcome).observe(time.monotonic() - started)
            return result

    return run
