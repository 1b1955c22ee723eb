"""PostgreSQL lost in the middle of a delivery: the destination has (or has not) taken the event,
and the worker cannot write down what happened. Nothing is dropped, and a delivery that
succeeded is not sent again because of a short outage.

The worker runs in-process with its database behind a FaultProxy; the vendor endpoint cuts the
database off at the moment it answers, so the failure lands exactly after the send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from app.admin import dead_letters
from app.platform.settings import Settings
from app.services import Services
from app.workers import delivery
from app.workers.jobs import sweep_outbox
from tests.support.fake_ats import FakeATS, Step, serve
from tests.support.proxy import FaultProxy, via_proxy
from tests.support.workers import FAST, add_source, record_batch, record_event, rows, run_worker


class CuttingVendor(FakeATS):
    """Calls ``on_answer(status)`` (from its own thread) as each delivery is answered."""

    def __init__(self) -> None:
        super().__init__()
        self.on_answer: Callable[[int], None] = lambda status: None

    async def _answer(self, request: Request, path: str, route: str) -> Response:
        response = await super()._answer(request, path, route)
        if path.startswith("/vendor"):
            self.on_answer(response.status_code)
        return response


@pytest.fixture
def vendor() -> Iterator[CuttingVendor]:
    fake = CuttingVendor()
    with serve(fake):
        yield fake


@pytest.fixture
def short_mark_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marking a delivery done gives up after half a second instead of ten."""
    monkeypatch.setattr(delivery, "MARK_DONE_PAUSES_S", (0.1,))
    monkeypatch.setattr(delivery, "MARK_DONE_BUDGET_S", 0.5)


def through(settings: Settings, proxy: FaultProxy, **overrides: Any) -> Settings:
    """Fast retry schedules, the database behind ``proxy``."""
    return via_proxy(settings, proxy, **{"connection_cache_ttl_s": 0, **FAST, **overrides})


def cut_database_on_first_answer(
    vendor: CuttingVendor, proxy: FaultProxy, outage_s: float
) -> list[int]:
    """As the destination answers the first delivery, PostgreSQL becomes unreachable for
    ``outage_s``; returns the statuses answered while that was armed."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def on_answer(status: int) -> None:
        seen.append(status)
        if len(seen) == 1:
            # Scheduled before the answer is written, so it lands before the worker reads it.
            loop.call_soon_threadsafe(proxy.set_mode, "refuse")
            loop.call_soon_threadsafe(loop.call_later, outage_s, proxy.set_mode, "open")

    vendor.on_answer = on_answer
    return seen


async def test_marking_done_survives_a_short_outage_so_the_event_is_sent_once(
    services: Services, settings: Settings, vendor: CuttingVendor, pg_proxy: FaultProxy
) -> None:
    vendor.add_sr_candidate("c-1")
    conn = await add_source(services, vendor, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    answered = cut_database_on_first_answer(vendor, pg_proxy, outage_s=0.4)

    await run_worker(through(settings, pg_proxy))

    assert answered == [200]
    [call] = vendor.calls_to("/vendor", method="POST")
    assert call.headers["webhook-id"] == str(rid)
    [row] = await rows(services, "SELECT attempts, done_at, last_status FROM delivery")
    assert (row.attempts, row.last_status) == (1, 200) and row.done_at is not None
    # Nothing left for the sweeper to send a second time.
    assert await sweep_outbox({"services": services}) == 0


@pytest.mark.parametrize(
    ("status", "outcome"), [(500, "retried"), (410, "dead-lettered")], ids=["defer", "give-up"]
)
async def test_a_database_lost_after_a_failed_send_retries_the_job(
    services: Services,
    settings: Settings,
    vendor: CuttingVendor,
    pg_proxy: FaultProxy,
    status: int,
    outcome: str,
) -> None:
    vendor.add_sr_candidate("c-1")
    vendor.script.append(Step(match="/vendor", status=status))
    if status == 410:
        vendor.script.append(Step(match="/vendor", status=status))
    conn = await add_source(services, vendor, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    # Longer than the mark-done retries: the job itself has to come back.
    answered = cut_database_on_first_answer(vendor, pg_proxy, outage_s=1.0)

    await run_worker(through(settings, pg_proxy))

    [row] = await rows(services, "SELECT attempts, done_at, last_status FROM delivery")
    assert row.done_at is not None, "the job was dropped with the delivery still owed"
    assert row.attempts == 2
    calls = vendor.calls_to("/vendor", method="POST")
    assert {c.headers["webhook-id"] for c in calls} == {str(rid)}
    if outcome == "retried":
        assert answered == [500, 200] and row.last_status == 200
        assert len(vendor.deliveries()) == 1
    else:
        assert answered == [410, 410]
        [letter] = await dead_letters.list_letters(
            services.engine, dead_letters.Filters(stage="delivery")
        )
        assert (letter.record_id, letter.reason) == (rid, "destination_gone")


async def test_a_longer_outage_sends_again_with_the_same_webhook_id(
    services: Services,
    settings: Settings,
    vendor: CuttingVendor,
    pg_proxy: FaultProxy,
    short_mark_done: None,
) -> None:
    # At least once: when the success cannot be written down in time, the job is retried
    # and the event sent again, identical, so the receiver can drop the repeat.
    vendor.add_sr_candidate("c-1")
    conn = await add_source(services, vendor, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    answered = cut_database_on_first_answer(vendor, pg_proxy, outage_s=1.5)

    await run_worker(through(settings, pg_proxy))

    assert answered == [200, 200]
    first, second = vendor.calls_to("/vendor", method="POST")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(rid)
    assert first.body == second.body
    [row] = await rows(services, "SELECT attempts, done_at FROM delivery")
    assert row.attempts == 2 and row.done_at is not None


async def test_a_batch_whose_success_cannot_be_written_sends_each_again_alike(
    services: Services,
    settings: Settings,
    vendor: CuttingVendor,
    pg_proxy: FaultProxy,
    short_mark_done: None,
) -> None:
    # A batch job (app.workers.delivery.deliver_records) whose marking-done transaction cannot
    # commit: every delivery it sent is sent again, by a job of its own, with the same
    # webhook-id and body; none is lost and none is marked done without a send.
    ids = await record_batch(services, vendor, 3)
    cut_database_on_first_answer(vendor, pg_proxy, outage_s=1.5)

    await run_worker(through(settings, pg_proxy, outbox_grace_s=60))

    calls = vendor.calls_to("/vendor", method="POST")
    by_id: dict[str, list[bytes]] = {}
    for call in calls:
        by_id.setdefault(call.headers["webhook-id"], []).append(call.body)
    assert sorted(by_id) == sorted(str(i) for i in ids)
    assert all(len(bodies) == 2 and bodies[0] == bodies[1] for bodies in by_id.values())
    assert all(call.status == 200 for call in calls)
    done = await rows(services, "SELECT attempts, done_at FROM delivery")
    assert [(r.attempts, r.done_at is not None) for r in done] == [(2, True)] * 3


async def test_a_batch_starts_no_new_send_while_its_sends_cannot_be_written(
    services: Services,
    settings: Settings,
    vendor: CuttingVendor,
    pg_proxy: FaultProxy,
    short_mark_done: None,
) -> None:
    # One send at a time: the first is answered as PostgreSQL goes away, so it cannot be
    # written down. The batch starts none of its other sends meanwhile; they are handed back
    # and sent once each when the database is back, and only the first is ever sent twice.
    ids = await record_batch(services, vendor, 3)
    cut_database_on_first_answer(vendor, pg_proxy, outage_s=1.5)

    await run_worker(through(settings, pg_proxy, outbox_grace_s=60, worker_concurrency=1))

    sends: dict[str, int] = {}
    for call in vendor.calls_to("/vendor", method="POST"):
        sends[call.headers["webhook-id"]] = sends.get(call.headers["webhook-id"], 0) + 1
    assert sorted(sends) == sorted(str(i) for i in ids)
    assert sorted(sends.values()) == [1, 1, 2]
    done = await rows(services, "SELECT done_at FROM delivery")
    assert all(r.done_at is not None for r in done) and len(done) == 3
