"""Prometheus metrics. Per process: with several uvicorn workers, scrape each or aggregate.

The counters and the histogram count what this process did. The backlog gauges are the
exception: they are read from PostgreSQL when ``/metrics`` is scraped, so every API process
reports the same cluster-wide figure (aggregate them with ``max``, not ``sum``). Workers have
no HTTP port, which is why the API, not the sweeper, reports them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import DB_ERRORS
from app.store import work

log = structlog.get_logger(__name__)

INTAKE = Counter(
    "hirehook_intake_total", "Events handed to the intake core, by outcome.", ["source", "outcome"]
)
REJECTED = Counter("hirehook_rejected_total", "Requests refused, by HTTP status.", ["status"])
INTAKE_SECONDS = Histogram(
    "hirehook_intake_seconds",
    "Time to record an event (one database statement).",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25),
)
OUTBOX_BACKLOG = Gauge(
    "hirehook_outbox_backlog",
    "Work not yet done, cluster-wide, read at scrape time: enrichment (table=outbox) and "
    "delivery (table=delivery) rows, whether queued, running or waiting for a retry.",
    ["table"],
)
# What workers could start now: a running job's row is leased past now and a deferred one waits
# for its retry, so neither counts. Scale workers on this, not on the backlog, which a
# destination that is down for hours fills with rows no number of workers can deliver sooner.
OUTBOX_DUE = Gauge(
    "hirehook_outbox_due",
    "Rows not yet done whose job is due now (neither running nor waiting for a retry), "
    "cluster-wide, read at scrape time.",
    ["table"],
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "hirehook_outbox_oldest_seconds",
    "Age of the oldest row not yet done, read at scrape time (0 when there is none).",
    ["table"],
)


async def refresh_backlog(engine: AsyncEngine, timeout_s: float) -> None:
    """Read both work tables' backlog into the gauges, or drop the gauges if PostgreSQL fails.

    A stale figure would keep an autoscaler acting on work that may be long done; an absent
    one makes it fall back to its other metrics (CPU).
    """
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            rows = {table: await work.backlog(conn, table) for table in work.TABLES}
    except DB_ERRORS as exc:
        for gauge in (OUTBOX_BACKLOG, OUTBOX_DUE, OUTBOX_OLDEST_SECONDS):
            gauge.clear()
        log.warning("metrics.backlog_unavailable", error=type(exc).__name__)
        return
    now = datetime.now(UTC)
    for table, row in rows.items():
        OUTBOX_BACKLOG.labels(table=table).set(row.pending)
        OUTBOX_DUE.labels(table=table).set(row.due)
        age = (now - row.oldest).total_seconds() if row.oldest is not None else 0.0
        OUTBOX_OLDEST_SECONDS.labels(table=table).set(max(age, 0.0))
