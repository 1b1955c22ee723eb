"""Retries with backoff for transport errors, 429 and 5xx; dead letters kept apart by kind for
401/403 (the tenant's configuration) and for everything else; retry and discard after a fix."""

from __future__ import annotations

import uuid

import pytest
from arq import Retry

from app import sources
from app.admin import dead_letters
from app.clients.base import ApiError, BudgetKey
from app.clients.budget import QUOTA_BUCKETS, QUOTA_WINDOW_S, RedisBudget
from app.platform.settings import Settings
from app.services import Services
from app.workers.jobs import backoff, classify_api_error, process_record
from tests.support.app import logged_events
from tests.support.fake_ats import HRM_KEY, SR_TOKEN, FakeATS, Step
from tests.support.workers import add_source, fast_settings, record_event, rows, run_worker


async def outbox(services: Services, rid: uuid.UUID) -> tuple[int, bool, str | None, str]:
    [row] = await rows(
        services,
        "SELECT o.attempts, o.done_at IS NOT NULL AS done, o.last_error, r.state "
        "FROM outbox o JOIN record r ON r.id = o.record_id WHERE o.record_id = :id",
        id=rid,
    )
    return row.attempts, row.done, row.last_error, row.state


async def test_server_errors_are_retried_until_the_ats_recovers(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1")
    fake_ats.script.extend([Step(status=503), Step(status=500)])
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    await run_worker(fast_settings(settings))
    assert [c.status for c in fake_ats.calls] == [503, 500, 200]
    assert await outbox(services, rid) == (3, True, None, "processed")
    assert await rows(services, "SELECT * FROM dead_letter") == []


async def test_429_waits_for_retry_after_across_the_tenant_budget(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    fake_ats.add_sr_job("j-1")
    fake_ats.script.append(Step(match="/sr/candidates", status=429, headers={"Retry-After": "1"}))
    conn = await add_source(services, fake_ats, "smartrecruiters")
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    first, second = fake_ats.calls
    assert (first.status, second.status) == (429, 200)
    # Honoured although the backoff alone would have retried after ~50 ms.
    assert second.started - first.finished >= 0.9
    assert (await outbox(services, rid))[:2] == (2, True)


async def test_timeouts_retry_then_dead_letter_as_a_pipeline_fault(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1")
    fake_ats.script.extend(Step(delay_s=1.0) for _ in range(4))
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    await run_worker(fast_settings(settings, api_call_timeout_s=0.3))
    assert len(fake_ats.calls) == 4
    attempts, done, last_error, state = await outbox(services, rid)
    assert (attempts, done, state) == (4, True, "dead_letter")
    assert last_error == "hrmanager candidate 1: timed out"
    [letter] = await rows(services, "SELECT * FROM dead_letter")
    assert (letter.stage, letter.kind, letter.reason, letter.attempts) == (
        "enrichment",
        "pipeline",
        "ats_unreachable",
        4,
    )


async def test_5xx_forever_is_a_pipeline_dead_letter_after_the_last_try(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    fake_ats.script.extend(Step(status=502) for _ in range(10))
    conn = await add_source(services, fake_ats, "smartrecruiters")
    await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings, enrich_max_attempts=3))
    assert [c.status for c in fake_ats.calls] == [502, 502, 502]
    [letter] = await rows(services, "SELECT kind, reason, detail FROM dead_letter")
    assert (letter.kind, letter.reason) == ("pipeline", "ats_server_error")
    assert letter.detail == "smartrecruiters candidate c-1: server error 502"


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "credentials_refused"), (403, "permission_denied")]
)
async def test_refused_credentials_are_a_configuration_problem_at_once(
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    capsys: pytest.CaptureFixture[str],
    status: int,
    reason: str,
) -> None:
    fake_ats.add_hrm_candidate("1")
    fake_ats.script.append(Step(status=status))
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.calls) == 1  # permanent: never retried
    [letter] = await rows(services, "SELECT * FROM dead_letter")
    assert (letter.record_id, letter.kind, letter.reason, letter.attempts) == (
        rid,
        "configuration",
        reason,
        1,
    )
    # The key went to the ATS, and nowhere else.
    assert fake_ats.calls[0].headers["apikey"] == HRM_KEY
    captured = capsys.readouterr()
    assert "job.dead_letter" in logged_events(captured)
    stored = await rows(
        services, "SELECT detail FROM dead_letter UNION ALL SELECT last_error FROM outbox"
    )
    assert all(
        HRM_KEY not in (text or "")
        for text in [captured.out, captured.err, *[r[0] for r in stored]]
    )


async def test_wrong_api_key_is_dead_lettered_then_retried_after_the_fix(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    conn = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "stale"})
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    fast = fast_settings(settings)
    await run_worker(fast)
    [letter] = await dead_letters.list_letters(services.engine, dead_letters.Filters())
    assert (letter.kind, letter.reason, letter.tenant) == (
        "configuration",
        "credentials_refused",
        "acme",
    )
    # Configuration problems and pipeline faults are listed apart.
    assert (
        await dead_letters.list_letters(services.engine, dead_letters.Filters(kind="pipeline"))
        == []
    )

    await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": SR_TOKEN})
    retried = await dead_letters.retry(
        services.engine, services.queue, dead_letters.Filters(kind="configuration")
    )
    assert retried == 1
    await run_worker(fast)
    assert (await outbox(services, rid))[1:] == (True, None, "processed")
    assert await dead_letters.list_letters(services.engine, dead_letters.Filters()) == []
    [resolved] = await dead_letters.list_letters(
        services.engine, dead_letters.Filters(), include_resolved=True
    )
    assert resolved.resolution == "retried"
    [candidate] = await rows(services, "SELECT external_id FROM candidate")
    assert candidate.external_id == "c-1"


async def test_not_found_is_permanent_and_can_be_discarded(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "nobody"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.calls) == 1
    [letter] = await dead_letters.list_letters(services.engine, dead_letters.Filters())
    assert (letter.kind, letter.reason) == ("pipeline", "not_found")
    assert await dead_letters.discard(services.engine, dead_letters.Filters(ids=[letter.id])) == 1
    assert (await outbox(services, rid))[3] == "discarded"
    assert await dead_letters.list_letters(services.engine, dead_letters.Filters()) == []


async def test_duplicates_waiting_on_a_failed_fetch_share_its_error(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1")
    fake_ats.script.append(Step(status=500, delay_s=0.3))
    conn = await add_source(services, fake_ats, "hrmanager")
    for _ in range(10):
        await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})
    await run_worker(fast_settings(settings, enrich_max_attempts=1, worker_concurrency=10))
    # One failed call for ten events, not ten calls in a row.
    assert len(fake_ats.calls) == 1
    letters = await rows(services, "SELECT reason FROM dead_letter")
    assert [r.reason for r in letters] == ["ats_server_error"] * 10


async def test_a_slow_budget_delays_work_and_never_fails_it(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    for i in range(4):
        fake_ats.add_hrm_candidate(str(i))
    conn = await add_source(
        services, fake_ats, "hrmanager", options={"limits": {"rate_per_s": 2, "burst": 1}}
    )
    for i in range(4):
        await record_event(services, conn, "CandidateUpdated", {"CandidateId": str(i)})
    await run_worker(fast_settings(settings))
    starts = sorted(c.started for c in fake_ats.calls)
    assert len(starts) == 4
    assert starts[-1] - starts[0] >= 1.4  # 2 calls/s: three gaps of at least 0.5 s
    assert await rows(services, "SELECT * FROM dead_letter") == []
    attempts = await rows(services, "SELECT attempts FROM outbox WHERE done_at IS NOT NULL")
    assert [a.attempts for a in attempts] == [1, 1, 1, 1]


async def test_a_spent_daily_quota_defers_without_spending_an_attempt(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    for i in range(3):
        fake_ats.add_hrm_candidate(str(i))
    conn = await add_source(services, fake_ats, "hrmanager", options={"limits": {"daily_quota": 2}})
    ids = [
        await record_event(
            services, conn, "CandidateUpdated", {"CandidateId": str(i)}, publish=False
        )
        for i in range(3)
    ]
    ctx = {"services": services, "handlers": sources.handlers()}
    assert await process_record(ctx, str(ids[0])) == "processed"
    assert await process_record(ctx, str(ids[1])) == "processed"
    with pytest.raises(Retry) as deferred:
        await process_record(ctx, str(ids[2]))
    assert len(fake_ats.calls) == 2
    # Until the first call has left the 24 hours the quota counts (in buckets of 15 minutes).
    wait_s = (deferred.value.defer_score or 0) / 1000
    assert QUOTA_WINDOW_S - 5 <= wait_s <= QUOTA_WINDOW_S + QUOTA_WINDOW_S / QUOTA_BUCKETS + 5
    attempts, done, last_error, state = await outbox(services, ids[2])
    assert (attempts, done, state) == (0, False, "received")
    assert last_error is not None and "rate budget exhausted" in last_error
    assert isinstance(services.budget, RedisBudget)
    assert await services.budget.calls_today(BudgetKey(conn.tenant_id, "hrmanager")) == 2


def test_backoff_is_exponential_capped_jittered_and_honours_retry_after() -> None:
    delays = [backoff(n, base_s=1, cap_s=30, retry_after_s=None) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff(1, base_s=1, cap_s=30, retry_after_s=7) == 7
    assert len({backoff(5, base_s=1, cap_s=30, retry_after_s=None) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ApiError("x", status=429, transient=True), ("pipeline", "rate_limited", True)),
        (ApiError("x", status=503, transient=True), ("pipeline", "ats_server_error", True)),
        (ApiError("x", transient=True), ("pipeline", "ats_unreachable", True)),
        (
            ApiError("x", status=401, transient=False, config_problem=True),
            ("configuration", "credentials_refused", False),
        ),
        (
            ApiError("x", status=403, transient=False, config_problem=True),
            ("configuration", "permission_denied", False),
        ),
        (
            ApiError("x", status=404, transient=False, config_problem=True),
            ("configuration", "permission_denied", False),
        ),
        (
            ApiError("x", transient=False, config_problem=True),
            ("configuration", "invalid_configuration", False),
        ),
        (ApiError("x", status=404, transient=False), ("pipeline", "not_found", False)),
        (ApiError("x", status=422, transient=False), ("pipeline", "rejected", False)),
    ],
)
def test_api_errors_map_to_retries_or_dead_letter_reasons(
    error: ApiError, expected: tuple[str, str, bool]
) -> None:
    failure = classify_api_error(error)
    assert (failure.kind, failure.reason, failure.transient) == expected
