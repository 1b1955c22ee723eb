"""arq worker configuration, built from the one Settings class."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any
from urllib.parse import unquote

import structlog
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from app import sources
from app.platform.queue import (
    DELIVER_RECORD,
    DELIVER_RECORDS,
    POLL_CONNECTION,
    PROCESS_RECORD,
    PROCESS_RECORDS,
    deserialize,
    serialize,
)
from app.platform.runtime import freeze_startup_heap
from app.platform.settings import Settings
from app.services import Services
from app.workers.delivery import SentLedger, deliver_record, deliver_records
from app.workers.jobs import process_record, process_records, sweep_outbox
from app.workers.maintenance import privacy_maintenance
from app.workers.observed import observed
from app.workers.poller import POLL_TICK_SECONDS, poll_connection, poll_due
from app.workers.resilient import ResilientWorker

log = structlog.get_logger(__name__)


def redis_settings(dsn: str) -> RedisSettings:
    """arq's connection settings for the same URL the API connects with."""
    parsed = RedisSettings.from_dsn(dsn)
    # from_dsn keeps the username and password percent-encoded, while redis-py's from_url (the
    # API) decodes them; a password with a reserved character (which pydantic always encodes)
    # would then authenticate the API and not the workers.
    return dataclasses.replace(
        parsed,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
    )


def worker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``arq.worker.Worker``."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = sources.create_services(settings)
        ctx["handlers"] = sources.handlers()
        freeze_startup_heap()
        # The loop the jobs run on ("uvloop" from `hirehook worker`, as the API's).
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        log.info("worker.started", pid=os.getpid(), sources=sorted(ctx["handlers"]), loop=loop)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        ledger: SentLedger | None = ctx.get("sent_ledger")
        if ledger is not None:
            # A statement in flight may still write down sends whose jobs were cancelled:
            # let it finish rather than send them all again after the restart.
            await ledger.drain()
        services: Services | None = ctx.get("services")
        if services is not None:
            await services.close()

    interval = settings.sweep_interval_s
    return {
        "functions": [
            # No results are kept: the outbox row is the result, and a kept result would
            # stop the sweeper from republishing the same job id.
            func(
                observed(PROCESS_RECORD, process_record),
                name=PROCESS_RECORD,
                keep_result=0,
                max_tries=1000,
            ),
            # A batch names many records: each record's run binds its own (app.workers.jobs).
            func(
                observed(PROCESS_RECORDS, process_records, subject=None),
                name=PROCESS_RECORDS,
                keep_result=0,
                max_tries=1000,
            ),
            func(
                observed(DELIVER_RECORD, deliver_record),
                name=DELIVER_RECORD,
                keep_result=0,
                max_tries=1000,
            ),
            func(
                observed(DELIVER_RECORDS, deliver_records, subject=None),
                name=DELIVER_RECORDS,
                keep_result=0,
                max_tries=1000,
            ),
            # A long sweep continues through Retry, one job run after another.
            func(
                observed(POLL_CONNECTION, poll_connection, subject="connection_id"),
                name=POLL_CONNECTION,
                keep_result=0,
                max_tries=10_000,
            ),
        ],
        "cron_jobs": [
            cron(
                sweep_outbox,
                second=set(range(0, 60, interval)),
                run_at_startup=True,
                keep_result=0,
                unique=True,
                timeout=max(interval * 2, 30),
            ),
            # Polling of ATS APIs without webhooks (app/workers/poller.py, docs/polling.md).
            cron(
                poll_due,
                second=set(POLL_TICK_SECONDS),
                run_at_startup=True,
                keep_result=0,
                unique=True,
                timeout=30,
            ),
            # Partitions ahead, retention purge, finished work rows (docs/privacy.md). At
            # startup too, so a fresh deployment has its partitions before the first event.
            cron(
                privacy_maintenance,
                minute={int(m) for m in settings.maintenance_minutes.split(",")},
                second=0,
                run_at_startup=True,
                keep_result=0,
                unique=True,
                timeout=300,
            ),
        ],
        "redis_settings": redis_settings(settings.redis_dsn),
        # Never arq's default (pickle): see app.platform.queue.serialize.
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_jobs": settings.worker_concurrency,
        # With the lease set in create_worker, a short job timeout is what bounds how long the
        # job of a worker that died waits for another worker.
        "job_timeout": settings.job_timeout_s,
        "keep_result": 0,
        "poll_delay": settings.worker_poll_delay_s,
        "handle_signals": True,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker for these settings; tests pass ``burst=True``."""
    # Not arq's Worker as is: that one exits when Redis goes away.
    worker = ResilientWorker(**{**worker_options(settings), **overrides})
    # arq keeps a started job's in-progress key for the longest timeout of any function
    # (the sweeper's included) plus 10 s; a job whose worker died waits that long for another.
    # Jobs are cancelled at job_timeout_s, so the lease can end soon after it.
    worker.in_progress_timeout_s = settings.worker_lease_s
    return worker
