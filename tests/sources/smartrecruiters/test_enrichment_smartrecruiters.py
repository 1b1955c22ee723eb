"""SmartRecruiters: ids-only notifications become candidates, jobs and applications; the one
concurrent ``GET /candidates`` the API allows is never exceeded."""

from __future__ import annotations

import asyncio

from app.platform.settings import Settings
from app.services import Services
from tests.support.fake_ats import SR_TOKEN, FakeATS
from tests.support.workers import add_source, fast_settings, record_event, rows, run_worker


def notification(name: str) -> dict[str, str]:
    return {
        "event-name": name,
        "event-version": "v201910",
        "event-id": f"evt-{name}",
        "link": "<https://api.smartrecruiters.com/x>; rel=self",
    }


async def test_application_event_fetches_candidate_and_job(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1", jobs=["j-1", "j-2"], updatedOn="2026-11-20T09:30:00.000Z")
    fake_ats.add_sr_job("j-2")
    conn = await add_source(services, fake_ats, "smartrecruiters")
    await record_event(
        services,
        conn,
        "application.status.updated",
        {"job_id": "j-2", "candidate_id": "c-1"},
        headers=notification("application.status.updated"),
    )
    await run_worker(fast_settings(settings))

    [call] = fake_ats.calls_to("/sr/candidates/c-1")
    assert call.headers["x-smarttoken"] == SR_TOKEN
    assert len(fake_ats.calls_to("/sr/jobs/j-2")) == 1
    [candidate] = await rows(services, "SELECT * FROM candidate")
    assert (candidate.external_id, candidate.first_name, candidate.last_name) == (
        "c-1",
        "Grace",
        "Hopper",
    )
    assert candidate.source_updated_at.isoformat() == "2026-11-20T09:30:00+00:00"
    [job] = await rows(services, "SELECT * FROM job")
    assert (job.title, job.status, job.location) == (
        "Compiler Engineer j-2",
        "SOURCING",
        "Oslo, no",
    )
    # The event is about one application, not every one the candidate has.
    [application] = await rows(services, "SELECT * FROM application")
    assert application.external_id == "c-1:j-2"
    assert application.status == "IN_REVIEW"
    assert application.document["job"]["id"] == "j-2"


async def test_candidate_event_upserts_every_assignment(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-2", jobs=["j-1", "j-2", "j-3"])
    conn = await add_source(services, fake_ats, "smartrecruiters")
    await record_event(services, conn, "candidate.updated", {"id": "c-2"})
    await run_worker(fast_settings(settings))
    assert [c.path for c in fake_ats.calls] == ["/sr/candidates/c-2"]
    applications = await rows(services, "SELECT external_id FROM application ORDER BY 1")
    assert [a.external_id for a in applications] == ["c-2:j-1", "c-2:j-2", "c-2:j-3"]


async def test_never_more_than_one_get_candidates_at_once(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.delay_s = 0.05
    # The fake answers 429 if a second GET /candidates arrives while one runs, as SR does.
    fake_ats.sr_candidate_concurrency = 1
    for i in range(8):
        fake_ats.add_sr_candidate(f"c-{i}")
        fake_ats.add_sr_job(f"j-{i}")
    conn = await add_source(services, fake_ats, "smartrecruiters")
    await asyncio.gather(
        *(record_event(services, conn, "candidate.updated", {"id": f"c-{i}"}) for i in range(8)),
        *(record_event(services, conn, "job.updated", {"id": f"j-{i}"}) for i in range(8)),
    )
    await run_worker(fast_settings(settings, worker_concurrency=16))

    candidate_calls = fake_ats.calls_to("/sr/candidates")
    assert len(candidate_calls) == 8
    assert {c.status for c in candidate_calls} == {200}
    assert fake_ats.max_inflight["/sr/candidates"] == 1
    # The cap is on the route, not the source: job fetches ran side by side.
    assert fake_ats.max_inflight["sr"] > 1
    done = await rows(services, "SELECT count(*) AS n FROM outbox WHERE done_at IS NOT NULL")
    assert done[0].n == 16


async def test_candidate_deleted_fetches_nothing(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    conn = await add_source(services, fake_ats, "smartrecruiters")
    await record_event(services, conn, "candidate.deleted", {"id": "c-gone"})
    await run_worker(fast_settings(settings))
    assert fake_ats.calls == []
    [candidate] = await rows(services, "SELECT external_id, deleted_at FROM candidate")
    assert candidate.external_id == "c-gone" and candidate.deleted_at is not None
