"""A worker writes its successful sends down together (app.workers.delivery.SentLedger): one
statement marks a group of sends' deliveries done and notes their attempts (the records'
stories), whichever job made them; not a statement, or two, per send."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.platform.settings import Settings
from app.services import Services
from app.store import attempts, work
from app.workers.delivery import SentLedger
from tests.support.fake_ats import FakeATS
from tests.support.workers import (
    batch_settings,
    record_batch,
    rows,
    run_worker,
    webhook_ids,
)


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every statement that wrote sends down."""
    sizes: list[int] = []
    original = attempts.delivered

    async def counted(conn: AsyncConnection, notes: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
        sizes.append(len(notes))
        return await original(conn, notes)

    monkeypatch.setattr(attempts, "delivered", counted)
    return sizes


async def test_sends_are_written_down_and_noted_together(
    services: Services, settings: Settings, fake_ats: FakeATS, written: list[int]
) -> None:
    ids = await record_batch(services, fake_ats, 20)

    await run_worker(batch_settings(settings))

    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids)
    # Every send is in its record's story, with the destination's answer, and done.
    noted = await rows(services, "SELECT record_id, status FROM delivery_attempt")
    assert sorted((str(r.record_id), r.status) for r in noted) == sorted((str(i), 200) for i in ids)
    done = await rows(services, "SELECT record_id, last_status FROM delivery WHERE done_at IS NULL")
    assert done == []
    statuses = await rows(services, "SELECT DISTINCT last_status FROM delivery")
    assert [r.last_status for r in statuses] == [200]
    # Each send written once, in fewer statements than sends.
    assert sum(written) == len(ids)
    assert len(written) < len(ids)


async def test_a_single_delivery_job_is_written_down_the_same_way(
    services: Services, settings: Settings, fake_ats: FakeATS, written: list[int]
) -> None:
    # A lone record is published as a job of its own, and so is its delivery.
    [rid] = await record_batch(services, fake_ats, 1)

    await run_worker(batch_settings(settings))

    assert webhook_ids(fake_ats) == [str(rid)]
    assert written == [1]
    story = await rows(services, "SELECT status FROM delivery_attempt WHERE record_id = :r", r=rid)
    assert [r.status for r in story] == [200]


async def test_an_attempt_of_an_erased_record_is_not_noted_and_the_rest_are(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    kept, erased = await record_batch(services, fake_ats, 2, publish=False)
    note = {
        "latency_ms": 3,
        "status": 200,
        "error": None,
        "answer": b"ok",
        "answer_size": 2,
    }
    tenant = (await rows(services, "SELECT tenant_id FROM record WHERE id = :r", r=kept))[0]
    async with services.engine.begin() as conn:
        owed = [(rid, tenant.tenant_id, "candidate.updated", b"{}") for rid in (kept, erased)]
        won, claimed = await work.finish_processed(conn, [kept, erased], owed, lease_s=0)
        assert won == claimed.ids == {kept, erased}
        await conn.execute(text("DELETE FROM record_key WHERE id = :id"), {"id": erased})

    async with services.autocommit.connect() as conn:
        finished = await attempts.delivered(
            conn,
            [
                {**note, "record_id": kept, "tenant_id": tenant.tenant_id},
                {**note, "record_id": erased, "tenant_id": tenant.tenant_id},
            ],
        )

    assert finished == {kept}
    noted = await rows(services, "SELECT record_id, answer FROM delivery_attempt")
    assert [(r.record_id, bytes(r.answer)) for r in noted] == [(kept, b"ok")]


async def test_the_ledgers_lines_name_each_records_own_tenant_not_the_jobs_context(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # The ledger's writer starts in a copy of whichever job's context made the first send of
    # a statement; a statement holds every job's sends, so a line must not take the tenant
    # (or the job) bound there, but name its own record's tenant.
    ledger = SentLedger(services)
    notes = [
        {
            "record_id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "latency_ms": 3,
            "status": 200,
            "answer": b"",
            "answer_size": 0,
        }
        for tenant_id in (1, 2)
    ]
    structlog.contextvars.bind_contextvars(tenant_id=999, job="another-jobs-send")
    try:
        with caplog.at_level(logging.INFO, logger="app.workers.delivery"):
            written = await asyncio.gather(*(ledger.write_down(note) for note in notes))
    finally:
        structlog.contextvars.clear_contextvars()
    assert written == [True, True]
    lines = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "delivery.delivered"
    ]
    assert sorted((line["record_id"], line["tenant_id"]) for line in lines) == sorted(
        (str(note["record_id"]), note["tenant_id"]) for note in notes
    )
    assert not any("job" in line for line in lines)
