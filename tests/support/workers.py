"""Shared helpers for the enrichment and worker tests: record events through the intake core,
run real arq workers (in-process in burst mode, or as ``hirehook worker`` subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Row, text

from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
)
from app.intake.connections import ConnectionInfo
from app.intake.core import Deadline, Event, json_answer
from app.platform.settings import Settings
from app.services import Services
from app.workers.settings import create_worker
from tests.support.app import TEST_SECRET_KEY, make_settings
from tests.support.fake_ats import HRM_ALIAS, HRM_KEY, SR_TOKEN, FakeATS

VENDOR_SECRET = "whsec_dmVuZG9yLWRlc3RpbmF0aW9uLXNlY3JldC0wMDAx"
HRM_SECRET = "68726d2d776562686f6f6b2d7368617265642d7365637265742d74657374"

# Short waits so retries and dead letters happen within a test's time.
FAST: dict[str, Any] = {
    "enrich_retry_base_s": 0.05,
    "enrich_retry_cap_s": 0.4,
    "enrich_max_attempts": 4,
    "api_call_timeout_s": 2.0,
    "coalesce_window_s": 5.0,
    "delivery_retry_schedule_s": [0.05, 0.1, 0.1],
}


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    """The session's servers with short retry schedules."""
    return make_settings(
        str(settings.database_url), str(settings.redis_url), **{**FAST, **overrides}
    )


async def add_source(
    services: Services,
    fake: FakeATS,
    source: str,
    *,
    tenant: str = "acme",
    options: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    destination: bool = False,
) -> ConnectionInfo:
    """A tenant connected to the fake ``hrmanager`` or ``smartrecruiters`` API."""
    if source == "hrmanager":
        base_options: dict[str, Any] = {"base_url": fake.hrm_base, "customer_alias": HRM_ALIAS}
        # Every HR Manager connection authenticates its webhooks (app/schemas/hrmanager_config).
        base_secrets: dict[str, Any] = {"api_key": HRM_KEY, "signing_secrets": [HRM_SECRET]}
    else:
        base_options = {"base_url": fake.sr_base}
        base_secrets = {"api_key": SR_TOKEN}
    spec = TenantSpec(
        slug=tenant,
        name=tenant.title(),
        connection=[
            ConnectionSpec(
                source=source,
                secrets=secrets if secrets is not None else base_secrets,
                options={**base_options, **(options or {})},
            )
        ],
        destination=(
            DestinationSpec(url=fake.vendor_url, secret=VENDOR_SECRET) if destination else None
        ),
    )
    await apply_tenants(TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher)
    services.connections.invalidate()
    info = await services.connections.by_tenant(tenant, source)
    assert info is not None
    return info


async def record_event(
    services: Services,
    connection: ConnectionInfo,
    event_type: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    headers: dict[str, str] | None = None,
    publish: bool = True,
) -> uuid.UUID:
    """Record one event as a router would (record + outbox, then publish the job)."""
    body = orjson.dumps(payload)
    outcome = await services.intake.record(
        Event(
            connection=connection,
            dedupe_key=dedupe_key or uuid.uuid4().hex,
            event_type=event_type,
            known=True,
            payload=payload,
            raw_body=body,
            headers=headers or {},
        ),
        answer_for=lambda rid: json_answer(202, {"record_id": str(rid)}),
        deadline=Deadline(5),
    )
    if publish:
        await services.intake.publish(outcome, known=True)
    return outcome.record_id


async def record_batch(
    services: Services, fake: FakeATS, n: int, *, publish: bool = True
) -> list[uuid.UUID]:
    """``n`` SmartRecruiters events of a tenant with a destination, recorded together and
    published as one batch job, as the API publishes a group-committed batch."""
    # The fake refuses concurrent candidate reads by default; a batch reads them together.
    fake.sr_candidate_concurrency = n
    conn = await add_source(services, fake, "smartrecruiters", destination=True)
    ids = []
    for i in range(n):
        fake.add_sr_candidate(f"c-{i}")
        ids.append(
            await record_event(services, conn, "candidate.updated", {"id": f"c-{i}"}, publish=False)
        )
    # The intake published them as it does for events sent one after another (the first at
    # once, the rest held back and together: app.intake.publisher); the same records arriving
    # together would have been one group-committed batch, published as one job.
    await services.intake.drain()
    await services.queue.redis.flushdb()
    if publish:
        assert await services.queue.enqueue_batch(ids) == n
    return ids


async def run_worker(settings: Settings, **overrides: Any) -> None:
    """A real arq worker in burst mode: runs until the queue (retries included) is empty."""
    worker = create_worker(settings, burst=True, poll_delay=0.01, **overrides)
    try:
        await worker.main()
    finally:
        await worker.close()


async def rows(services: Services, sql: str, **params: Any) -> list[Row[Any]]:
    """Rows of a query."""
    async with services.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``hirehook worker`` subprocess on the session's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}
    env.update(
        {
            "HIREHOOK_ENVIRONMENT": "test",
            "HIREHOOK_DATABASE_URL": str(settings.database_url),
            "HIREHOOK_REDIS_URL": str(settings.redis_url),
            "HIREHOOK_SECRET_KEY": TEST_SECRET_KEY,
            "HIREHOOK_LOG_FORMAT": "json",
            "HIREHOOK_OUTBOX_GRACE_S": "0",
            "HIREHOOK_CONNECTION_CACHE_TTL_S": "0",
            # As in make_settings: tests refuse many requests from one address on purpose.
            "HIREHOOK_AUTH_FAILURE_DELAY_S": "0",
            **{f"HIREHOOK_{k.upper()}": v for k, v in extra.items()},
        }
    )
    return env


def spawn_worker(env: dict[str, str], log: Path, *, burst: bool) -> subprocess.Popen[bytes]:
    """Start ``hirehook worker`` as its own process, logging JSON lines to ``log``."""
    args = [sys.executable, "-m", "app.cli", "worker"] + (["--burst"] if burst else [])
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event name written by a subprocess worker."""
    found = []
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            entry = orjson.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


def batch_settings(settings: Settings, **overrides: Any) -> Settings:
    # The sweeper runs as the worker starts; with the tests' zero grace it would republish
    # the batch's records as jobs of their own before the batch job runs.
    return fast_settings(settings, outbox_grace_s=60, **overrides)


def webhook_ids(fake_ats: FakeATS, *, status: int | None = None) -> list[str]:
    return sorted(
        c.headers["webhook-id"]
        for c in fake_ats.calls_to("/vendor", method="POST")
        if status is None or c.status == status
    )
