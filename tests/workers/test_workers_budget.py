"""The rate budget lives in Redis: two processes share one (tenant, ATS) budget, its concurrency
cap, its 429 penalties and its daily quota; it keeps SmartRecruiters' 10 requests in any one
second, so a back-fill with its enrichment draws no refusal from an API that counts that way."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from app.clients.base import ApiClient, ApiError, BudgetExhaustedError, BudgetKey
from app.clients.budget import Limits, RedisBudget, RouteLimits
from app.platform.settings import Settings
from app.poller.run import Poller
from app.services import Services
from tests.support.app import logged_events
from tests.support.fake_ats import SR_TOKEN, FakeATS
from tests.support.fake_smartrecruiters import SlidingWindowLimit, serve_asgi
from tests.support.workers import (
    add_source,
    fast_settings,
    log_events,
    record_event,
    rows,
    run_worker,
    spawn_worker,
    worker_env,
)

KEY = BudgetKey(7, "smartrecruiters")


def budget(
    redis: Redis, limits: Limits, *, max_wait_s: float = 5.0, quota_window_s: float = 86400
) -> RedisBudget:
    async def resolve(key: BudgetKey) -> Limits:
        del key
        return limits

    return RedisBudget(
        redis, resolve, max_wait_s=max_wait_s, lease_s=5, quota_window_s=quota_window_s
    )


def most_in_any_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` in one window of ``window_s``, wherever it starts."""
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def waits(key: BudgetKey = KEY) -> float:
    """How many times a call under ``key`` has slept for the budget (in this process)."""
    labels = {"source": key.source, "tenant": str(key.tenant_id), "result": "waited"}
    return REGISTRY.get_sample_value("hirehook_rate_budget_waits_total", labels) or 0.0


async def grant_times(budgets: list[RedisBudget], n: int, key: BudgetKey = KEY) -> list[float]:
    """When each of ``n`` calls, spread over ``budgets`` and all asking at once, was granted."""
    granted: list[float] = []

    async def call(b: RedisBudget) -> None:
        async with b.slot(key):
            granted.append(time.monotonic())

    await asyncio.gather(*(call(budgets[i % len(budgets)]) for i in range(n)))
    return granted


@pytest.fixture
async def two_clients(services: Services, settings: Settings) -> AsyncIterator[list[Redis]]:
    # Separate connection pools stand for separate processes.
    clients = [Redis.from_url(str(settings.redis_url)) for _ in range(2)]
    yield clients
    for client in clients:
        await client.aclose()


async def test_concurrency_cap_holds_across_budgets(two_clients: list[Redis]) -> None:
    limits = Limits(concurrency=8, routes={"GET /candidates": RouteLimits(concurrency=2)})
    budgets = [budget(c, limits) for c in two_clients]
    running = 0
    peak = 0

    async def call(b: RedisBudget) -> None:
        nonlocal running, peak
        async with b.slot(BudgetKey(7, "smartrecruiters", "GET /candidates")):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

    await asyncio.gather(*(call(budgets[i % 2]) for i in range(12)))
    assert peak == 2
    assert await budgets[0].calls_today(KEY) == 12


async def test_rate_is_shared_by_every_budget(two_clients: list[Redis]) -> None:
    budgets = [budget(c, Limits(rate_per_s=20, burst=2)) for c in two_clients]
    started = time.monotonic()

    async def call(b: RedisBudget) -> None:
        async with b.slot(KEY):
            pass

    await asyncio.gather(*(call(budgets[i % 2]) for i in range(12)))
    # Two at once, then 20 per second: ten more need at least 0.5 s whoever asks.
    assert time.monotonic() - started >= 0.45


@pytest.mark.parametrize(
    "limits",
    [
        Limits(rate_per_s=10),  # SmartRecruiters: 10 in any second, all ten at once if idle
        Limits(rate_per_s=10, burst=3),
        Limits(rate_per_s=4, routes={"GET /candidates": RouteLimits(rate_per_s=2)}),
    ],
    ids=["10-per-s", "burst-3", "route-2-per-s"],
)
async def test_no_one_second_window_holds_more_grants_than_the_limit(
    two_clients: list[Redis], limits: Limits
) -> None:
    """Two processes asking together: the grants, wherever a 1 s window is laid over them,
    never number more than the limit (a token bucket let its burst and a second's refill
    into one second: 20 where 10 were allowed)."""
    budgets = [budget(c, limits, max_wait_s=60) for c in two_clients]
    route = "GET /candidates" if limits.routes else "*"
    key = BudgetKey(7, "smartrecruiters", route)
    limit = 2 if limits.routes else int(limits.rate_per_s or 0)
    granted = await grant_times(budgets, 3 * limit + 5, key)
    assert len(granted) == 3 * limit + 5
    assert most_in_any_window(granted, 1.0) <= limit
    # The limit is used, not undercut: the first window is full.
    assert most_in_any_window(granted, 0.5) >= min(limit, limits.burst or limit)


async def test_a_window_is_widened_to_hold_one_call_at_low_rates(
    two_clients: list[Redis],
) -> None:
    granted = await grant_times([budget(c, Limits(rate_per_s=0.8)) for c in two_clients], 3)
    # 0.8 calls per second is one call in any 1.25 s.
    assert most_in_any_window(granted, 1.25) == 1


async def test_remaining_zero_on_an_answer_makes_every_process_wait(
    two_clients: list[Redis],
) -> None:
    """X-RateLimit-Remaining: 0 means the ATS counts a full window, whoever spent it: the next
    grant, in this process or another, waits for the window to pass."""
    limits = Limits(rate_per_s=10, rate_limit_headers="window")
    first, second = (budget(c, limits) for c in two_clients)
    remaining = ["0", "9"]

    def answer(request: httpx.Request) -> httpx.Response:
        del request
        return httpx.Response(200, json={}, headers={"X-RateLimit-Remaining": remaining.pop(0)})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = ApiClient(http, first, KEY)
        await client.request("GET", "http://ats.test/candidates/1", what="one")
        # This process's next grant writes the report down; until a window has passed
        # since the answer, neither process is granted anything.
        started = time.monotonic()
        other = asyncio.create_task(grant_times([second], 1))
        await client.request("GET", "http://ats.test/candidates/2", what="two")
        waited = time.monotonic() - started
        [other_granted] = await other
    assert waited >= 0.8
    assert other_granted - started >= 0.8
    # A report of room to spare holds nothing back.
    before = waits()
    await grant_times([first, second], 4)
    assert waits() == before


async def test_remaining_is_ignored_where_the_source_does_not_say_what_it_counts(
    two_clients: list[Redis],
) -> None:
    first = budget(two_clients[0], Limits(rate_per_s=10))
    first.observe(KEY, 0)
    before = waits()
    await grant_times([first], 2)
    assert waits() == before


async def test_retry_after_on_a_429_or_a_503_makes_every_process_wait(
    two_clients: list[Redis],
) -> None:
    first, second = (budget(c, Limits()) for c in two_clients)
    answers = [
        httpx.Response(503, json={}, headers={"Retry-After": "1"}),
        httpx.Response(429, json={}, headers={"Retry-After": "1"}),
    ]
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: answers.pop(0))
    ) as http:
        for _ in range(2):
            with pytest.raises(ApiError):
                await ApiClient(http, first, KEY).request("GET", "http://ats.test/x", what="x")
            started = time.monotonic()
            await grant_times([second], 1)
            assert time.monotonic() - started >= 0.8


async def test_a_daily_quota_holds_over_any_window_not_per_calendar_day(
    two_clients: list[Redis],
) -> None:
    """The quota counts the last 24 hours (here a 2 s stand-in): a spent quota frees up as
    its oldest calls leave the window, never all at once at midnight."""
    limits = Limits(daily_quota=3)
    budgets = [budget(c, limits, max_wait_s=10, quota_window_s=2.0) for c in two_clients]
    started = time.monotonic()
    granted = await grant_times(budgets, 7)
    assert most_in_any_window(granted, 2.0) <= 3
    assert max(granted) - started >= 2 * 2.0 * 0.95
    # A wait longer than max_wait_s is a deferral for as long as the window needs.
    short = budget(two_clients[0], limits, max_wait_s=0.1, quota_window_s=2.0)
    other = BudgetKey(8, "icims")
    await grant_times([short], 3, other)
    with pytest.raises(BudgetExhaustedError) as spent:
        async with short.slot(other):
            pass
    assert 0 < (spent.value.retry_after_s or 0) <= 2.2


async def test_remaining_of_a_daily_quota_is_written_down_with_the_next_grant(
    two_clients: list[Redis],
) -> None:
    limits = Limits(daily_quota=10, rate_limit_headers="daily_quota")
    first = budget(two_clients[0], limits, max_wait_s=0.1, quota_window_s=60.0)
    async with first.slot(KEY):
        pass
    # The ATS counts 9 of its 10 spent (someone else's calls too): one more call fits.
    first.observe(KEY, 1)
    async with first.slot(KEY):
        pass
    with pytest.raises(BudgetExhaustedError):
        async with budget(two_clients[1], limits, max_wait_s=0.1, quota_window_s=60.0).slot(KEY):
            pass


async def test_a_429_closes_the_budget_for_everyone(two_clients: list[Redis]) -> None:
    first, second = (budget(c, Limits()) for c in two_clients)
    await first.penalize(KEY, 0.5)
    await first.penalize(KEY, 0.1)  # a shorter Retry-After never shortens a longer one
    started = time.monotonic()
    async with second.slot(KEY):
        waited = time.monotonic() - started
    assert 0.4 <= waited < 2


async def test_waits_beyond_the_limit_become_deferrals(two_clients: list[Redis]) -> None:
    quota = budget(two_clients[0], Limits(daily_quota=1))
    async with quota.slot(KEY):
        pass
    with pytest.raises(BudgetExhaustedError) as spent:
        async with quota.slot(KEY):
            pass
    assert spent.value.transient and (spent.value.retry_after_s or 0) > 0
    penalized = budget(two_clients[1], Limits(), max_wait_s=0.2)
    await penalized.penalize(KEY, 3)
    with pytest.raises(BudgetExhaustedError):
        async with penalized.slot(KEY):
            pass


async def test_redis_unreachable_does_not_block_calls(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_connect_timeout=0.2)
    entered = False
    started = time.monotonic()
    try:
        async with budget(gone, Limits(rate_per_s=1, concurrency=1)).slot(KEY):
            entered = True
    finally:
        await gone.aclose()
    # The call went ahead without a grant, at once (the bound is generous for a loaded machine;
    # a budget that retried Redis would take seconds per attempt), and said why.
    assert entered and time.monotonic() - started < 20
    assert "budget.unavailable" in logged_events(capsys.readouterr())


async def test_invalid_limits_option_is_a_configuration_dead_letter(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    conn = await add_source(
        services, fake_ats, "smartrecruiters", options={"limits": {"rate_per_s": "fast"}}
    )
    await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    assert fake_ats.calls == []
    [letter] = await rows(services, "SELECT kind, reason, detail FROM dead_letter")
    assert (letter.kind, letter.reason) == ("configuration", "invalid_configuration")
    assert "options.limits" in letter.detail
    with pytest.raises(ApiError):
        async with services.budget.slot(BudgetKey(conn.tenant_id, "smartrecruiters")):
            pass


async def test_rate_budget_is_held_across_two_worker_processes(
    services: Services, settings: Settings, fake_ats: FakeATS, tmp_path: Path
) -> None:
    fake_ats.delay_s = 0.05
    n, rate = 16, 4.0
    for i in range(n):
        fake_ats.add_sr_candidate(f"c-{i}")
    conn = await add_source(
        services,
        fake_ats,
        "smartrecruiters",
        options={"limits": {"rate_per_s": rate, "burst": 1}},
    )
    env = worker_env(settings, worker_concurrency="4", coalesce_window_s="0")
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [spawn_worker(env, log, burst=False) for log in logs]
    try:
        # Both processes are polling before any work exists, so both get some.
        deadline = time.monotonic() + 30
        while not all(log_events(log, "worker.started") for log in logs):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(w.poll() is None for w in workers), "a worker exited"
            await asyncio.sleep(0.1)
        for i in range(n):
            await record_event(services, conn, "candidate.updated", {"id": f"c-{i}"})
        while True:
            [done] = await rows(
                services, "SELECT count(*) AS n FROM outbox WHERE done_at IS NOT NULL"
            )
            if done.n == n:
                break
            assert time.monotonic() < deadline + 60, f"only {done.n} of {n} done"
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(20)

    calls = fake_ats.calls_to("/sr/candidates")
    assert len(calls) == n
    assert {c.status for c in calls} == {200}  # no 429: the one-at-a-time limit held
    assert fake_ats.max_inflight["/sr/candidates"] == 1
    starts = sorted(c.started for c in calls)
    # One token at a time at 4/s: fifteen gaps of 250 ms, whichever process asked.
    assert starts[-1] - starts[0] >= (n - 1) / rate * 0.9
    per_worker = [len(log_events(log, "job.record_processed")) for log in logs]
    assert sum(per_worker) == n and min(per_worker) >= 1, per_worker
    text = b"".join(log.read_bytes() for log in logs)
    assert SR_TOKEN.encode() not in text


# The back-fill: SmartRecruiters' own limit (10 in any 1 s window per credential) and the
# candidate count the refusals were first seen with; about 275 requests, ~30 s at 10/s.
BACKFILL = 120
SINCE = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def limited_sr() -> Iterator[tuple[FakeATS, SlidingWindowLimit]]:
    fake = FakeATS()
    limiter = SlidingWindowLimit(fake.app(), limit=10, window_s=1.0)
    with serve_asgi(limiter) as url:
        fake.url = url
        yield fake, limiter
        fake.released.set()


async def test_a_backfill_with_enrichment_draws_no_refusal_from_a_sliding_window(
    services: Services, settings: Settings, limited_sr: tuple[FakeATS, SlidingWindowLimit]
) -> None:
    fake, limiter = limited_sr
    for i in range(BACKFILL):
        moment = SINCE + timedelta(minutes=i + 1)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        fake.add_sr_candidate(f"c-{i:03d}", jobs=["j-1"], createdOn=stamp, updatedOn=stamp)
    polling: dict[str, Any] = {
        "refresh_interval_min": 15,
        "resources": {
            "candidates": {
                "url": "/candidates?updatedAfter=${isoDate}",
                "pagination": {"type": "page_id", "limit": 10},
            }
        },
    }
    # SmartRecruiters' default limits: nothing in options.limits.
    conn = await add_source(services, fake, "smartrecruiters", options={"polling": polling})
    poll = asyncio.create_task(Poller(services).run(conn, since=SINCE))
    # A call that timed out on a loaded machine would still hold the ATS's one GET
    # /candidates slot when the next began (a 429 for concurrency, not for rate).
    worker_settings = fast_settings(
        settings, enrich_max_attempts=8, enrich_retry_cap_s=2.0, api_call_timeout_s=10.0
    )
    deadline = time.monotonic() + 240
    try:
        # The worker enriches what each page recorded while the poller lists the next pages.
        while True:
            await run_worker(worker_settings)
            [done] = await rows(
                services, "SELECT count(*) AS n FROM outbox WHERE done_at IS NOT NULL"
            )
            if poll.done() and done.n == BACKFILL:
                break
            assert time.monotonic() < deadline, f"{done.n} of {BACKFILL} enriched"
            await asyncio.sleep(0.05)
    finally:
        if not poll.done():
            poll.cancel()
    report = await poll
    assert report.resources[0].recorded == BACKFILL
    sent = len(limiter.admitted) + len(limiter.refused)
    assert limiter.refused == [], f"{len(limiter.refused)} refusals for rate out of {sent}"
    assert {c.status for c in fake.calls} == {200}  # nor for GET /candidates' concurrency
    fetched = {c.path for c in fake.calls_to("/sr/candidates/")}
    assert len(fetched) == BACKFILL
    assert await rows(services, "SELECT * FROM dead_letter") == []
