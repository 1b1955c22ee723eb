"""The poll cron and the poll job.

``poll_due`` runs on every worker every 15 s (arq's ``unique`` cron: one run per tick across all
workers) and enqueues ``poll_connection(connection_id)`` for each connection with a resource due
(its refresh interval passed, a sweep left unfinished, or a failure's backoff over). The job id
``poll:<connection id>`` keeps one queued job per connection; the database lock in
:meth:`app.poller.run.Poller.exclusive` is the real guard, so two workers that both start one
never poll the same connection at once. A job stops starting pages before its timeout and asks
arq to run it again at once (or after the API's Retry-After), so a long sweep continues
without waiting for the next tick.
"""

from __future__ import annotations

from typing import Any

import structlog
from arq import Retry
from redis.exceptions import RedisError

from app.platform.db import DB_ERRORS
from app.poller.run import Poller, is_due, polled_connections, stored_position
from app.schemas import polling
from app.services import Services
from app.store import cursors

log = structlog.get_logger(__name__)

POLL_TICK_SECONDS = frozenset(range(0, 60, 15))


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


async def poll_due(ctx: dict[str, Any]) -> int:
    """Enqueue a poll of every connection with a resource due; how many were enqueued."""
    services = _services(ctx)
    poller = Poller(services)
    try:
        connections = await polled_connections(services)
        async with services.engine.connect() as conn:
            stored = await cursors.positions(conn, [c.id for c in connections])
    except DB_ERRORS as exc:
        log.warning("poll.due_unavailable", error=type(exc).__name__)
        return 0
    now = poller.now()
    enqueued = 0
    for connection in connections:
        try:
            config = connection.parsed(polling.parse)
        except ValueError as exc:
            log.warning("poll.invalid_configuration", connection_id=connection.id, detail=str(exc))
            continue
        due = any(
            is_due(
                stored_position(stored.get((connection.id, name), ({}, None))[0], config, now),
                config,
                now,
            )
            for name in config.resources
        )
        if not due:
            continue
        try:
            enqueued += await services.queue.enqueue_poll(connection.id)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("poll.enqueue_failed", error=type(exc).__name__)
            return enqueued
    return enqueued


async def poll_connection(ctx: dict[str, Any], connection_id: int) -> str:
    """Poll the due resources of one connection; ``busy`` if another worker is polling it."""
    services = _services(ctx)
    try:
        found = await polled_connections(services, connection_id)
    except DB_ERRORS as exc:
        log.warning("poll.unavailable", connection_id=connection_id, error=type(exc).__name__)
        return "unavailable"
    if not found:
        return "not-polled"
    settings = services.settings
    # No page starts after this: its call (api_call_timeout_s at most) and its commit must end
    # inside the job timeout, or arq cancels the run midway (harmless, but wasted).
    run_s = max(
        settings.job_timeout_s * 0.25, settings.job_timeout_s - settings.api_call_timeout_s - 2
    )
    try:
        report = await Poller(services).run(found[0], only_due=True, deadline_s=run_s)
    except DB_ERRORS as exc:
        # The cursor holds whatever was committed; the next tick polls again.
        log.warning("poll.unavailable", connection_id=connection_id, error=type(exc).__name__)
        return "unavailable"
    if report.status == "more":
        # Pages are left: run again now (or when the API's Retry-After has passed).
        raise Retry(defer=max(report.retry_after_s or 0.0, 0.05))
    return report.status


__all__ = ["POLL_TICK_SECONDS", "poll_connection", "poll_due"]
