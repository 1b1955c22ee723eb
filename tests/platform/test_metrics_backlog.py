"""The backlog gauges an autoscaler scales workers on: read from PostgreSQL at scrape time."""

from __future__ import annotations

import httpx
from prometheus_client import generate_latest
from sqlalchemy import text

from app.platform.metrics import refresh_backlog
from app.services import Services
from tests.support.fake_ats import FakeATS
from tests.support.workers import add_source, record_event


def sample(body: str, name: str, table: str) -> float | None:
    prefix = f"hirehook_{table}_{name.removeprefix('hirehook_outbox_')} "
    found = [ln for ln in body.splitlines() if ln.startswith(prefix)]
    return float(found[0].removeprefix(prefix)) if found else None


async def test_metrics_report_rows_not_done_in_each_work_table(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    body = (await client.get("/metrics")).text
    assert sample(body, "hirehook_outbox_backlog", "outbox") == 0
    assert sample(body, "hirehook_outbox_oldest_seconds", "outbox") == 0

    conn = await add_source(services, fake_ats, "hrmanager")
    ids = [
        await record_event(
            services, conn, "CandidateUpdated", {"CandidateId": str(i)}, publish=False
        )
        for i in range(3)
    ]
    async with services.engine.begin() as db:
        await db.execute(
            text("UPDATE outbox SET done_at = now() WHERE record_id = :id"), {"id": ids[0]}
        )
        await db.execute(
            text("UPDATE outbox SET created_at = now() - interval '90 s', available_at = now()")
        )
        # One row waits for a retry: still owed, not yet work a worker could start.
        await db.execute(
            text("UPDATE outbox SET available_at = now() + interval '1 h' WHERE record_id = :id"),
            {"id": ids[1]},
        )

    body = (await client.get("/metrics")).text
    assert sample(body, "hirehook_outbox_backlog", "outbox") == 2
    assert sample(body, "hirehook_outbox_due", "outbox") == 1
    assert sample(body, "hirehook_outbox_backlog", "delivery") == 0
    oldest = sample(body, "hirehook_outbox_oldest_seconds", "outbox")
    assert oldest is not None
    assert 85 < oldest < 150


async def test_backlog_is_dropped_not_left_stale_when_postgresql_fails(
    services: Services,
) -> None:
    await refresh_backlog(services.engine, 2.0)
    assert sample(generate_latest().decode(), "hirehook_outbox_backlog", "outbox") == 0
    # A timeout too short for any round trip stands in for an unreachable database.
    await refresh_backlog(services.engine, 1e-9)
    exposition = generate_latest().decode()
    for table in ("outbox", "delivery"):
        assert sample(exposition, "hirehook_outbox_backlog", table) is None
        assert sample(exposition, "hirehook_outbox_due", table) is None
