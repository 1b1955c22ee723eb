"""The brute-force guard against the session's real Redis, and without one."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from app.intake.guard import (
    FailureLimit,
    FailureLimiter,
    address_subject,
    client_subject,
    retry_after,
)
from tests.support.app import make_settings

SECRET = "s3cret-" + "x" * 40
Limiter = Callable[..., FailureLimiter]


@pytest.fixture
async def redis(servers: tuple[str, str]) -> AsyncIterator[Redis]:
    """A client of the session's Redis."""
    client = Redis.from_url(servers[1], socket_connect_timeout=1, socket_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def limiter(redis: Redis) -> Limiter:
    """Limiters over the session's Redis; those made by one test share a key prefix."""
    prefix = f"test:authfail:{uuid.uuid4().hex}:"

    def make(
        client: int = 3,
        address: int | None = 5,
        block_s: float = 30.0,
        client_redis: Redis | None = None,
        **kwargs: Any,
    ) -> FailureLimiter:
        return FailureLimiter(
            client_redis or redis,
            per_client=FailureLimit(client, 60.0, block_s),
            per_address=FailureLimit(address, 60.0, block_s) if address else None,
            timeout_s=0.5,
            prefix=prefix,
            **kwargs,
        )

    return make


async def authenticate(guard: FailureLimiter, client_id: str, ip: str, secret: str) -> int:
    """The status a route following the module's recipe would answer: the credentials are
    checked first, and only a failure is the guard's business."""
    subjects = (client_subject("icims", "client", client_id), address_subject(ip))
    if secret != SECRET:
        return 429 if await guard.failed(*subjects) is not None else 401
    return 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_failures_below_the_limit_do_not_block(limiter: Limiter) -> None:
    guard = limiter(client=3)
    for _ in range(3):
        assert await authenticate(guard, "c1", "10.0.0.1", "wrong") == 401
    assert await authenticate(guard, "c1", "10.0.0.1", SECRET) == 200


async def test_crossing_the_limit_blocks_failures_never_right_credentials(
    limiter: Limiter,
) -> None:
    guard = limiter(client=3, block_s=30)
    subject = client_subject("icims", "client", "c1")
    for _ in range(3):
        assert await guard.failed(subject) is None
    wait = await guard.failed(subject)
    assert wait is not None and 29 < wait <= 30
    checked = await guard.check(subject)
    assert checked is not None and 29 < checked <= 30
    assert retry_after(checked) == "30"
    assert await authenticate(guard, "c1", "10.0.0.1", "wrong") == 429
    # A client id is no secret: its owner is not locked out by someone else's guesses.
    assert await authenticate(guard, "c1", "10.0.0.1", SECRET) == 200


async def test_client_and_address_are_limited_independently(limiter: Limiter) -> None:
    guard = limiter(client=3, address=5)
    for _ in range(3):
        assert await authenticate(guard, "c1", "10.0.0.1", "wrong") == 401
    assert await authenticate(guard, "c1", "10.0.0.1", "wrong") == 429
    # The client's failures are blocked wherever they come from; its address counted 4 of 5.
    assert await authenticate(guard, "c1", "10.0.0.2", "wrong") == 429
    assert await authenticate(guard, "c1", "10.0.0.2", SECRET) == 200
    assert await authenticate(guard, "c2", "10.0.0.1", "wrong") == 401

    # One address guessing across many client ids is stopped by the address limit.
    assert await authenticate(guard, "c3", "10.0.0.1", "wrong") == 429
    assert await authenticate(guard, "c4", "10.0.0.1", "wrong") == 429
    assert await authenticate(guard, "c4", "10.0.0.1", SECRET) == 200
    assert await authenticate(guard, "c4", "10.0.0.9", "wrong") == 401


async def test_a_block_known_here_costs_no_redis_round_trip(limiter: Limiter, redis: Redis) -> None:
    guard = limiter(client=3, address=1)
    address = address_subject("203.0.113.9")
    await guard.failed(address)
    assert await guard.failed(address) is not None

    async def pttl_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_pttl", {}).get("calls", 0))

    before = await pttl_calls()
    # A blocked address trying ever new client ids: each id is new to the view, but the
    # address alone settles the answer.
    for n in range(20):
        wait = await guard.check(client_subject("icims", "basic", f"u{n}"), address)
        assert wait is not None and wait > 0
    assert await pttl_calls() == before


async def test_address_limit_can_be_turned_off(limiter: Limiter) -> None:
    guard = limiter(client=3, address=None)
    for n in range(10):
        assert await authenticate(guard, f"c{n}", "10.0.0.1", "wrong") == 401
    assert await guard.check(address_subject("10.0.0.1")) is None


async def test_replicas_sharing_redis_see_the_same_block(limiter: Limiter) -> None:
    one, two = limiter(client=2, cache_ttl_s=0.2), limiter(client=2, cache_ttl_s=0.2)
    subject = client_subject("keldair", "tenant", "acme")
    # The second replica has just cached "not blocked"...
    assert await two.check(subject) is None
    assert await one.failed(subject) is None
    assert await two.failed(subject) is None
    assert await one.failed(subject) is not None
    # ...so it sees the block once that answer is stale, and at once when a failure reaches it.
    await asyncio.sleep(0.25)
    assert await two.check(subject) is not None
    three = limiter(client=2)
    assert await three.failed(subject) is not None
    assert await three.check(subject) is not None


async def test_a_block_expires(limiter: Limiter) -> None:
    one, two = limiter(client=1, block_s=0.3), limiter(client=1, block_s=0.3)
    subject = client_subject("icims", "client", "c1")
    await one.failed(subject)
    assert await one.failed(subject) is not None
    assert await one.check(subject) is not None
    assert await two.check(subject) is not None
    await asyncio.sleep(0.35)
    assert await one.check(subject) is None
    assert await two.check(subject) is None
    # The count started over with the block: one failure is tolerated again.
    assert await one.failed(subject) is None


async def test_redis_keys_always_expire(limiter: Limiter, redis: Redis) -> None:
    guard = limiter(client=2)
    await guard.failed(client_subject("icims", "client", "c1"), address_subject("10.0.0.1"))
    for _ in range(3):
        await guard.failed(client_subject("icims", "client", "c2"))
    keys = [k async for k in redis.scan_iter(match=f"{guard._prefix}*")]
    assert len(keys) == 3  # two counters and one block; the blocked subject's counter is gone
    for key in keys:
        assert 0 < await redis.pttl(key) <= 60_000


async def test_long_subjects_are_cut_before_they_reach_redis_or_memory(
    limiter: Limiter, redis: Redis
) -> None:
    guard = limiter(client=1)
    huge = client_subject("icims", "client", "x" * 100_000)
    await guard.failed(huge)
    assert await guard.failed(huge) is not None
    assert await guard.check(huge) is not None
    # Differing only past the kept prefix, another id is still another subject.
    assert await guard.check(huge + "y") is None
    keys = [k async for k in redis.scan_iter(match=f"{guard._prefix}*")]
    assert keys and all(len(k) < 300 for k in keys)
    assert all(len(s) < 300 for s in guard._view)


async def test_local_cache_stays_bounded(limiter: Limiter) -> None:
    guard = limiter(cache_size=1000)
    ids = [client_subject("icims", "client", f"bogus-{n}") for n in range(20_000)]
    for start in range(0, len(ids), 500):
        assert await guard.check(*ids[start : start + 500]) is None
    assert len(guard._view) <= 1000


async def test_redis_unreachable_fails_open_and_still_limits_locally(limiter: Limiter) -> None:
    down = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        guard = limiter(client=3, client_redis=down, redis_retry_s=0)
        subject = client_subject("icims", "client", "c1")
        started = time.monotonic()
        assert await guard.check(subject, address_subject("10.0.0.1")) is None
        for _ in range(3):
            assert await guard.failed(subject) is None
        assert await guard.failed(subject) is not None
        assert await guard.check(subject) is not None
        assert await authenticate(guard, "c1", "10.0.0.1", "wrong") == 429
        assert await authenticate(guard, "c1", "10.0.0.1", SECRET) == 200
        assert await authenticate(guard, "c2", "10.0.0.1", "wrong") == 401
        # A refused connection is answered at once; generous for a loaded machine.
        assert time.monotonic() - started < 10

        ids = [client_subject("icims", "client", f"bogus-{n}") for n in range(20_000)]
        bounded = limiter(client_redis=down, fallback_size=1000)
        for subject in ids:
            await bounded.failed(subject)
        assert len(bounded._fallback) <= 1000
    finally:
        await down.aclose()


# Long enough that one more call to Redis shows, whatever else slows the machine.
HANG_TIMEOUT_S = 1.0


async def test_a_hanging_redis_costs_at_most_the_timeout(limiter: Limiter) -> None:

    # Accepts connections and never answers: what a wedged server or a dropped route looks like.
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = Redis(port=port)
    try:
        guard = FailureLimiter(
            silent,
            per_client=FailureLimit(1, 60, 30),
            per_address=None,
            timeout_s=HANG_TIMEOUT_S,
        )
        subject = client_subject("icims", "client", "c1")
        started = time.monotonic()
        assert await guard.check(subject) is None
        # Bounded by the timeout, not hanging (generous for a loaded machine).
        assert time.monotonic() - started < HANG_TIMEOUT_S + 5
        # Within the retry interval Redis is not asked again: asking once would cost a whole
        # timeout, and three local checks take a small part of one.
        started = time.monotonic()
        assert await guard.failed(subject) is None
        assert await guard.failed(subject) is not None
        assert await guard.check(subject) is not None
        assert time.monotonic() - started < HANG_TIMEOUT_S
    finally:
        await silent.aclose()
        server.close()
        await server.wait_closed()


async def test_from_settings(redis: Redis, servers: tuple[str, str]) -> None:
    settings = make_settings(
        *servers,
        auth_failure_limit_per_client=2,
        auth_failure_limit_per_address=0,
        auth_failure_window_s=10,
        auth_block_s=7,
    )
    guard = FailureLimiter.from_settings(redis, settings)
    assert guard._per_client == FailureLimit(2, 10, 7)
    assert guard._per_address is None
    defaults = make_settings(*servers)
    assert FailureLimiter.from_settings(redis, defaults)._per_address == FailureLimit(60, 60, 300)


# --- Holding refusals ------------------------------------------------------------------------

DELAY_S = 0.3


async def timed(call: Any) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_refusals_are_answered_at_once_until_a_subject_keeps_failing(
    limiter: Limiter,
) -> None:
    guard = limiter(client=100, address=100, delay_s=DELAY_S, delay_after=2, max_held=10)
    address = address_subject("10.0.0.9")
    elsewhere = address_subject("10.0.0.10")
    for _ in range(2):
        await guard.failed(address)
        assert await timed(guard.hold(address)) < DELAY_S / 2
    await guard.failed(address)
    assert await timed(guard.hold(address)) >= 0.75 * DELAY_S
    # The count is the subject's own: another address's first failure is answered at once.
    await guard.failed(elsewhere)
    assert await timed(guard.hold(elsewhere)) < DELAY_S / 2
    # A blocked subject's refusals are held from the first.
    assert await timed(guard.hold(address_subject("10.0.0.11"), blocked=True)) >= 0.75 * DELAY_S


async def test_held_answers_are_capped_per_process(limiter: Limiter) -> None:
    guard = limiter(delay_s=DELAY_S, delay_after=0, max_held=2)
    subject = address_subject("10.0.0.12")
    await guard.failed(subject)
    took = await asyncio.gather(*(timed(guard.hold(subject)) for _ in range(5)))
    assert sorted(t >= 0.75 * DELAY_S for t in took) == [False, False, False, True, True]
    # The counter tells what was held, for tests and operators.
    assert guard.held_total == 2


async def test_no_delay_configured_holds_nothing(limiter: Limiter) -> None:
    guard = limiter(delay_s=0, delay_after=0, max_held=10)
    subject = address_subject("10.0.0.13")
    await guard.failed(subject)
    assert await timed(guard.hold(subject, blocked=True)) < DELAY_S / 2


async def test_a_flood_from_many_addresses_gets_its_refusals_held(limiter: Limiter) -> None:
    """Past the process-wide rate, even an address failing for the first time is held."""
    guard = limiter(
        client=100, address=100, delay_s=DELAY_S, delay_after=5, max_held=10, delay_above_per_s=3
    )
    # Each a new address: no subject alone has failed often. Aligned to a fresh second so all
    # four failures fall into one.
    await asyncio.sleep(1 - time.monotonic() % 1)
    subjects = [address_subject(f"10.1.0.{i}") for i in range(4)]
    for subject in subjects[:3]:
        await guard.failed(subject)
        assert await timed(guard.hold(subject)) < DELAY_S / 2
    await guard.failed(subjects[3])
    assert await timed(guard.hold(subjects[3])) >= 0.75 * DELAY_S
