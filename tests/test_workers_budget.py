"""The rate budget lives in Redis: two processes share one (tenant, ATS) budget, its concurrency
cap, its 429 penalties and its daily quota."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.clients.base import ApiError, BudgetExhaustedError, BudgetKey
from app.clients.budget import Limits, RedisBudget, RouteLimits
from app.services import Services
from app.settings import Settings
from tests.fake_ats import SR_TOKEN, FakeATS
from tests.workers_support import (
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


def budget(redis: Redis, limits: Limits, *, max_wait_s: float = 5.0) -> RedisBudget:
    async def resolve(key: BudgetKey) -> Limits:
        del key
        return limits

    return RedisBudget(redis, resolve, max_wait_s=max_wait_s, lease_s=5)


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


async def test_redis_unreachable_does_not_block_calls(closed_port: int) -> None:
    gone = Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_connect_timeout=0.2)
    try:
        async with budget(gone, Limits(rate_per_s=1, concurrency=1)).slot(KEY):
            pass
    finally:
        await gone.aclose()


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
