"""Prometheus metrics, right with several API processes and for every worker process.

Counters and histograms count what a process did. ``hirehook api`` with more than one uvicorn
worker runs prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by
:func:`prepare_multiprocess_dir`): each process writes its values to files there and
``/metrics``, whichever process answers, sums them all (:func:`exposition`). A worker
process serves its own ``/metrics`` (``hirehook worker --metrics-port``).

The backlog is the exception: it is read from PostgreSQL when ``/metrics`` is scraped, so it
is a cluster-wide figure that every API process reports alike (aggregate it with ``max``, not
``sum``). It lives in a collector of the scraping process, never in the multiprocess files,
so a failed read drops it instead of leaving another process's stale value behind.

Each kind of process serves its own registry (:data:`API`, :data:`WORKER`) so that a scrape
declares only the families that process can move: a family that is always empty there would
read as "nothing happened" instead of "not counted here". The default registry keeps every
family, for tests that read values in-process.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Generic, TypeVar

import prometheus_client
import structlog
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.db import DB_ERRORS
from app.store import work

log = structlog.get_logger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A ``*_created`` series per counter and histogram doubles the series count for a timestamp
# nobody graphs (the process start is in process_start_time_seconds); must run before any
# metric below is made.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# A label value outside a known, small set is folded into this one: an attacker choosing
# event types or paths must not mint a time series per request.
OTHER = "other"

# Answers are fast (one statement) unless the database is slow; the top buckets show a
# sender's 25 s budget being eaten.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)
_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

M = TypeVar("M", Counter, Histogram)


class Children(Generic[M]):
    """The labelled children of one metric, each looked up once per process.

    prometheus-client's ``labels()`` turns every value into a string, takes a lock and looks
    the child up again on every call; the request path asks for the same few children on
    every event. Only for label values from a small, known set (the callers fold anything a
    sender chooses into :data:`OTHER`), since each one is kept for the life of the process.
    """

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        try:
            return self._children[values]
        except KeyError:
            child: M = self._metric.labels(*values)
            self._children[values] = child
            return child


# API side.
ACK_SECONDS = Histogram(
    "hirehook_ack_seconds",
    "Time from a sender's request to the answer, by source and HTTP status.",
    ["source", "status"],
    buckets=_LATENCY_BUCKETS,
)
EVENTS = Counter(
    "hirehook_events_total",
    "Events handed to the intake core, by source, event type (known types only, else "
    "'other') and outcome: recorded, quarantined (authentic, did not fit its model) or "
    "duplicate.",
    ["source", "event_type", "outcome"],
)
REFUSED = Counter(
    "hirehook_refused_total",
    "Requests refused before anything was recorded, by source, HTTP status and reason.",
    ["source", "status", "reason"],
)
AUTH_FAILURES = Counter(
    "hirehook_auth_failures_total",
    "Requests whose credentials were missing, wrong or stale (answered 401), by source.",
    ["source"],
)
INTAKE_SECONDS = Histogram(
    "hirehook_intake_seconds",
    "Time to record an event (one database statement).",
    ["source"],
    buckets=_LATENCY_BUCKETS,
)

# Worker side.
JOB_SECONDS = Histogram(
    "hirehook_job_seconds",
    "Duration of one job run, by job and outcome (processed, delivered, dead-letter, "
    "already-done, retry, error, ...).",
    ["job", "outcome"],
    buckets=_JOB_BUCKETS,
)
RECORDS_PROCESSED = Counter(
    "hirehook_records_processed_total",
    "Records enriched and marked done, by source, whether by a job of one record or of a batch.",
    ["source"],
)
JOB_RETRIES = Counter(
    "hirehook_job_retries_total", "Job runs that ended in a deferred retry, by job.", ["job"]
)
DEAD_LETTERS = Counter(
    "hirehook_dead_letters_total",
    "Records given up on, by stage (enrichment, delivery), cause (configuration: the tenant "
    "must fix something; pipeline) and reason.",
    ["stage", "kind", "reason"],
)
ATS_CALLS = Counter(
    "hirehook_ats_calls_total",
    "Calls to ATS APIs, by source, tenant id and result (2xx, 3xx, 4xx, 429, 5xx, error).",
    ["source", "tenant", "result"],
)
ATS_RATE_LIMITED = Counter(
    "hirehook_ats_rate_limited_total",
    "ATS API answers 429 Too Many Requests, by source and tenant id.",
    ["source", "tenant"],
)
BUDGET_WAITS = Counter(
    "hirehook_rate_budget_waits_total",
    "Times a call waited for the shared rate budget, by source, tenant id and result "
    "(waited: slept then called; deferred: the wait was too long, the job was retried later).",
    ["source", "tenant", "result"],
)
BUDGET_WAIT_SECONDS = Counter(
    "hirehook_rate_budget_wait_seconds_total",
    "Seconds spent sleeping for the shared rate budget, by source and tenant id.",
    ["source", "tenant"],
)
DELIVERIES = Counter(
    "hirehook_deliveries_total",
    "Delivery attempts to tenants' destinations, by outcome (delivered, retrying, dead_letter).",
    ["outcome"],
)

# What each kind of process serves. Intake is both (the poller records events in a worker),
# and so are ATS calls and the rate budget (a check calls the ATS before an event is recorded).
API = CollectorRegistry()
WORKER = CollectorRegistry()
_SHARED: tuple[Collector, ...] = (
    EVENTS,
    INTAKE_SECONDS,
    ATS_CALLS,
    ATS_RATE_LIMITED,
    BUDGET_WAITS,
    BUDGET_WAIT_SECONDS,
    PROCESS_COLLECTOR,
    PLATFORM_COLLECTOR,
    GC_COLLECTOR,
)
_API_ONLY: tuple[Collector, ...] = (ACK_SECONDS, REFUSED, AUTH_FAILURES)
_WORKER_ONLY: tuple[Collector, ...] = (
    JOB_SECONDS,
    RECORDS_PROCESSED,
    JOB_RETRIES,
    DEAD_LETTERS,
    DELIVERIES,
)
for _registry, _collectors in ((API, _API_ONLY + _SHARED), (WORKER, _WORKER_ONLY + _SHARED)):
    for _collector in _collectors:
        _registry.register(_collector)


def _version() -> str:
    try:
        return version("hirehook")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


class BuildInfoCollector(Collector):
    """``hirehook_build_info{version,python} 1``: which build answers, for dashboards and
    alerts to join on; a collector, not a gauge, so multiprocess mode reports it once."""

    def __init__(self) -> None:
        self.labels = (_version(), platform.python_version())

    def collect(self) -> Iterable[Metric]:
        """One constant series."""
        info = GaugeMetricFamily(
            "hirehook_build_info",
            "The running Hirehook version and Python version; always 1.",
            labels=["version", "python"],
        )
        info.add_metric(list(self.labels), 1)
        yield info


BUILD_INFO = BuildInfoCollector()
for _registry in (REGISTRY, API, WORKER):
    _registry.register(BUILD_INFO)


@dataclass(frozen=True, slots=True)
class _Backlog:
    pending: int
    due: int
    oldest_s: float


class BacklogCollector(Collector):
    """The last backlog this process read from PostgreSQL, or nothing if the read failed."""

    def __init__(self) -> None:
        self.tables: dict[str, _Backlog] | None = None

    def collect(self) -> Iterable[Metric]:
        """The three backlog gauges, one series per work table."""
        if self.tables is None:
            return
        # Enrichment (outbox) and delivery each have their own families: one name with a
        # table label invites summing two different kinds of work by accident.
        for table, row in self.tables.items():
            what = _BACKLOG_WORK[table]
            backlog = GaugeMetricFamily(
                f"hirehook_{table}_backlog",
                f"{what} rows not yet done, cluster-wide, read at scrape time, whether queued, "
                "running or waiting for a retry.",
                value=row.pending,
            )
            # What workers could start now: a running job's row is leased past now and a
            # deferred one waits for its retry, so neither counts. Scale workers on this, not
            # on the backlog, which a destination that is down for hours fills with rows no
            # number of workers can deliver sooner.
            due = GaugeMetricFamily(
                f"hirehook_{table}_due",
                f"{what} rows not yet done whose job is due now (neither running nor waiting "
                "for a retry), cluster-wide, read at scrape time.",
                value=row.due,
            )
            oldest = GaugeMetricFamily(
                f"hirehook_{table}_oldest_seconds",
                f"Age of the oldest {what.lower()} row not yet done, read at scrape time (0 "
                "when there is none).",
                value=row.oldest_s,
            )
            yield from (backlog, due, oldest)


# Work table (the families' name part) -> what its rows are.
_BACKLOG_WORK = {"outbox": "Enrichment", "delivery": "Delivery"}

BACKLOG = BacklogCollector()
REGISTRY.register(BACKLOG)
API.register(BACKLOG)


async def refresh_backlog(engine: AsyncEngine, timeout_s: float) -> None:
    """Read both work tables' backlog for the next exposition, or drop it if PostgreSQL fails.

    A stale figure would keep an autoscaler acting on work that may be long done; an absent
    one makes it fall back to its other metrics (CPU).
    """
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            rows = {table: await work.backlog(conn, table) for table in work.TABLES}
    except DB_ERRORS as exc:
        BACKLOG.tables = None
        log.warning("metrics.backlog_unavailable", error=type(exc).__name__)
        return
    now = datetime.now(UTC)
    BACKLOG.tables = {
        table: _Backlog(
            pending=row.pending,
            due=row.due,
            oldest_s=max((now - row.oldest).total_seconds(), 0.0) if row.oldest else 0.0,
        )
        for table, row in rows.items()
    }


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, if this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Create (or empty) the multiprocess directory and export it to the processes to come.

    Called once by the parent before uvicorn starts its workers: files left by an earlier run
    would add that run's counts to this one's.
    """
    chosen = path or multiprocess_dir() or tempfile.mkdtemp(prefix="hirehook-metrics-")
    directory = Path(chosen)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    return str(directory)


def remove_multiprocess_dir(path: str) -> None:
    """Remove a directory :func:`prepare_multiprocess_dir` created (best effort)."""
    shutil.rmtree(path, ignore_errors=True)


def exposition() -> bytes:
    """The API's text exposition: every API process's counters in multiprocess mode, plus the
    backlog and the build."""
    if multiprocess_dir() is None:
        return generate_latest(API)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(BACKLOG)
    registry.register(BUILD_INFO)
    return generate_latest(registry)
