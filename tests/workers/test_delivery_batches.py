"""Deliveries owed by one finishing transaction are sent by the batch job that processed them
(app.workers.delivery.deliver_owed), or as one batch job (``deliver_records``) when the
sweeper or a hand-back publishes them: one claim, concurrent sends. A failure in the batch
continues alone on the retry schedule; sends the job has no time left for are handed back
untried; the rest of the batch is neither held back nor sent twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from app.admin import dead_letters
from app.platform.settings import Settings
from app.services import Services
from app.store import work
from app.workers.delivery import MARK_DONE_BUDGET_S
from tests.support.fake_ats import FakeATS, Step
from tests.support.workers import (
    VENDOR_SECRET,
    batch_settings,
    record_batch,
    rows,
    run_worker,
    webhook_ids,
)


def runs(job: str, outcome: str) -> float:
    """Runs of ``job`` that ended with ``outcome``, in this process."""
    labels = {"job": job, "outcome": outcome}
    return REGISTRY.get_sample_value("hirehook_job_seconds_count", labels) or 0.0


async def owe(services: Services, ids: list[uuid.UUID]) -> None:
    """Recorded (unpublished) records processed, and their deliveries handed back untried by
    the processing job that owed them, published as one batch job, as the sweeper publishes
    what a processing job left unsent."""
    tenants = await rows(services, "SELECT id, tenant_id FROM record")
    owed = [(r.id, r.tenant_id, "candidate.updated", b'{"n":1}') for r in tenants if r.id in ids]
    async with services.engine.begin() as conn:
        won, claimed = await work.finish_processed(conn, ids, owed, lease_s=600)
        assert won == claimed.ids == set(ids)
        await work.release_many(conn, "delivery", ids)
    assert await services.queue.enqueue_deliveries(ids) == len(ids)


async def test_a_batch_is_delivered_by_the_job_that_processed_it_each_event_once_and_signed(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    # No delivery job at all: the processing job sent what its transaction owed.
    before = (runs("deliver_records", "done"), runs("deliver_record", "delivered"))
    ids = await record_batch(services, fake_ats, 5)

    await run_worker(batch_settings(settings))

    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids)
    for call in fake_ats.deliveries():
        event = Webhook(VENDOR_SECRET).verify(call.body.decode(), call.headers)
        assert isinstance(event, dict) and event["data"]["record_id"] == call.headers["webhook-id"]
    delivered = await rows(services, "SELECT attempts, last_status, done_at FROM delivery")
    assert len(delivered) == 5
    assert all((r.attempts, r.last_status) == (1, 200) and r.done_at for r in delivered)
    after = (runs("deliver_records", "done"), runs("deliver_record", "delivered"))
    assert (after[0] - before[0], after[1] - before[1]) == (0, 0)


async def test_a_published_batch_is_delivered_by_one_job(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    before = (runs("deliver_records", "done"), runs("deliver_record", "delivered"))
    ids = await record_batch(services, fake_ats, 5, publish=False)
    await owe(services, ids)

    await run_worker(batch_settings(settings))

    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids)
    delivered = await rows(services, "SELECT attempts, last_status, done_at FROM delivery")
    assert all((r.attempts, r.last_status) == (1, 200) and r.done_at for r in delivered)
    after = (runs("deliver_records", "done"), runs("deliver_record", "delivered"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


async def test_a_failed_delivery_in_a_batch_is_retried_alone(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.script.append(Step(match="/vendor", status=503))
    ids = await record_batch(services, fake_ats, 4)

    await run_worker(batch_settings(settings))

    [refused] = webhook_ids(fake_ats, status=503)
    # Delivered once each; only the refused one was sent again, with the same id and body.
    assert webhook_ids(fake_ats, status=200) == sorted(str(i) for i in ids)
    again = [
        c for c in fake_ats.calls_to("/vendor", method="POST") if c.headers["webhook-id"] == refused
    ]
    assert len(again) == 2 and again[0].body == again[1].body
    attempts = {
        str(r.record_id): r.attempts
        for r in await rows(
            services, "SELECT record_id, attempts FROM delivery WHERE done_at IS NOT NULL"
        )
    }
    assert attempts == {str(i): 2 if str(i) == refused else 1 for i in ids}


def short_jobs(settings: Settings) -> Settings:
    """One send at a time, and a job timeout that leaves time to finish only a send started
    at once."""
    return batch_settings(
        settings,
        worker_concurrency=1,
        delivery_timeout_s=2.0,
        job_timeout_s=2.0 + MARK_DONE_BUDGET_S + 1,
    )


@pytest.mark.parametrize(
    ("owed_by", "sent_alone"), [("deliver_records", 3), ("process_records", 4)]
)
async def test_sends_the_job_has_no_time_for_are_handed_back_untried(
    services: Services, settings: Settings, fake_ats: FakeATS, owed_by: str, sent_alone: int
) -> None:
    """A delivery job's first send starts whatever the time (the job makes progress); a
    processing job's time went to its processing, so not even its first send starts. Every
    delivery not sent goes back to the queue without an attempt, to a job of its own."""
    ids = await record_batch(services, fake_ats, 4, publish=owed_by == "process_records")
    if owed_by == "deliver_records":
        await owe(services, ids)
    before = runs("deliver_record", "delivered")

    await run_worker(short_jobs(settings))

    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids)
    assert runs("deliver_record", "delivered") - before == sent_alone
    # The attempts of the sends handed back were given back.
    delivered = await rows(services, "SELECT attempts, done_at FROM delivery")
    assert [r.attempts for r in delivered] == [1, 1, 1, 1]
    assert all(r.done_at is not None for r in delivered)


async def test_a_batch_whose_destination_went_away_is_dead_lettered(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    ids = await record_batch(services, fake_ats, 3, publish=False)
    await owe(services, ids)
    async with services.engine.begin() as conn:
        await conn.execute(text("UPDATE destination SET enabled = false"))

    await run_worker(batch_settings(settings))

    assert fake_ats.calls_to("/vendor", method="POST") == []
    letters = await dead_letters.list_letters(
        services.engine, dead_letters.Filters(stage="delivery")
    )
    assert sorted(letter.record_id for letter in letters) == sorted(ids)
    assert {letter.reason for letter in letters} == {"destination_missing"}


async def test_a_record_another_run_finished_first_lands_none_of_this_runs_effects(
    services: Services, settings: Settings, fake_ats: FakeATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a batch's claim and its finish another run finishes one of its records: the
    finish is done again without it, so the candidate this run upserted for it is rolled back
    and nothing is owed for it, and the rest of the batch lands and is delivered."""
    ids = await record_batch(services, fake_ats, 3)
    lost = ids[1]
    real = work.finish_processed
    calls: list[set[uuid.UUID]] = []

    async def raced(conn: Any, record_ids: list[uuid.UUID], *args: Any, **kw: Any) -> Any:
        if not calls:
            async with services.autocommit.connect() as other:
                await other.execute(
                    text("UPDATE outbox SET done_at = now() WHERE record_id = :r"), {"r": lost}
                )
        calls.append(set(record_ids))
        return await real(conn, record_ids, *args, **kw)

    monkeypatch.setattr(work, "finish_processed", raced)
    await run_worker(batch_settings(settings))

    assert calls == [set(ids), set(ids) - {lost}]
    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids if i != lost)
    candidates = await rows(services, "SELECT external_id FROM candidate ORDER BY external_id")
    assert [c.external_id for c in candidates] == ["c-0", "c-2"]
    states = await rows(services, "SELECT id, state FROM record")
    assert {r.id: r.state for r in states} == {
        ids[0]: "processed",
        lost: "received",
        ids[2]: "processed",
    }
