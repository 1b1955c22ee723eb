"""The one backoff policy (app.platform.backoff) and the waits each of its users got before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.cli.dev import RESTART_BACKOFF
from app.platform.backoff import EQUAL_JITTER, PLUS_MINUS_20, Backoff
from app.poller.position import Position
from app.workers.delivery import next_delay
from app.workers.resilient import BACKOFF as REDIS_BACKOFF


def test_without_jitter_the_wait_doubles_from_the_base_up_to_the_cap() -> None:
    policy = Backoff(base_s=0.5, cap_s=30.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # Attempt 0 (nothing failed yet) waits the base, as the record job always did.
    assert policy.delay(0) == 0.5
    # No overflow however many attempts failed.
    assert policy.delay(10_000) == 30.0


def test_equal_jitter_stays_between_half_the_step_and_the_step_and_varies() -> None:
    policy = Backoff(base_s=1.0, cap_s=30.0, jitter=EQUAL_JITTER)
    for attempt in range(1, 10):
        ceiling = min(30.0, 2.0 ** (attempt - 1))
        for _ in range(50):
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling
    assert len({policy.delay(5) for _ in range(20)}) > 1


def test_a_schedule_is_followed_then_its_last_step_repeats_within_20_percent() -> None:
    policy = Backoff.schedule([10.0, 60.0, 300.0], PLUS_MINUS_20)
    assert [policy.step(n) for n in (1, 2, 3, 4, 9)] == [10.0, 60.0, 300.0, 300.0, 300.0]
    waits = [policy.delay(2) for _ in range(200)]
    assert all(48.0 <= w <= 72.0 for w in waits)
    assert min(waits) < 60.0 < max(waits)
    # The delivery schedule goes through the same policy.
    assert all(8.0 <= next_delay([10.0, 60.0], 1, None) <= 12.0 for _ in range(50))
    with pytest.raises(ValueError, match="at least one step"):
        Backoff.schedule([])


def test_retry_after_is_a_floor_whatever_the_jitter() -> None:
    for jitter in ((1.0, 1.0), EQUAL_JITTER, PLUS_MINUS_20):
        policy = Backoff(base_s=1.0, cap_s=30.0, jitter=jitter)
        assert policy.delay(1, retry_after_s=7.0) == 7.0
        assert policy.delay(9, retry_after_s=None) >= 15.0
        assert policy.delay(9, retry_after_s=0.0) >= 15.0


def test_the_fixed_waits_are_the_ones_each_caller_had() -> None:
    # The worker's Redis reconnects: 0.2 s doubling to 5 s.
    assert [REDIS_BACKOFF.delay(n) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    # hirehook dev's restarts: 1 s doubling to 30 s.
    assert [RESTART_BACKOFF.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 30]


def test_a_failed_poll_waits_30_s_doubling_up_to_the_interval() -> None:
    failed_at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    interval = timedelta(minutes=15)
    for failures, wait in ((1, 30), (2, 60), (3, 120), (5, 480), (6, 900), (40, 900)):
        position = Position(since=failed_at, failures=failures, failed_at=failed_at)
        before = failed_at + timedelta(seconds=wait) - timedelta(microseconds=1)
        assert not position.due(before, interval, retry_cap=interval)
        assert position.due(failed_at + timedelta(seconds=wait), interval, retry_cap=interval)
