"""One rate budget per (tenant, ATS), kept in Redis so every worker and API process shares it.

Each call takes a place in a sliding window (at most ``rate_per_s * window_s`` calls in any
``window_s``, wherever the window starts: the way SmartRecruiters counts its 10 requests per
second), a token from a bucket (``burst``: how many of those may go at once), a slot under a
concurrency cap (for the whole source and, optionally, for one route), and counts towards a
daily quota held over any 24 hours; all of it is decided in one Lua script, so two processes
can never both take the last place. What the ATS says of its own count is written down too:
``X-RateLimit-Remaining`` (where a source's ``rate_limit_headers`` says what it counts) with the
next grant this process asks for, and a 429 closes the budget for its ``Retry-After`` at once.
Running out never fails a call: it waits, and a wait longer than ``max_wait_s`` becomes
:class:`BudgetExhaustedError`, which workers turn into a deferred retry that does not count as
an attempt.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clients.base import ApiError, BudgetExhaustedError, BudgetKey
from app.clients.scripts import BUDGET_FUNCTIONS, LEVEL_KEYS
from app.intake.connections import ConnectionStore
from app.platform.metrics import BUDGET_WAIT_SECONDS, BUDGET_WAITS

log = structlog.get_logger(__name__)

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)
# Jitter only spreads waiters apart; it protects nothing.
_jitter = random.Random()  # noqa: S311

# KEYS and ARGV as ``acquire`` in app/clients/scripts.py takes them (offsets 0).
_ACQUIRE = BUDGET_FUNCTIONS + "return acquire(0, 0)\n"
# A daily quota is held over any 24 hours, counted in 96 buckets of 15 minutes: a call made
# counts until its bucket has wholly left the window, i.e. for 24 h to 24 h 15 min.
QUOTA_WINDOW_S = 86400.0
QUOTA_BUCKETS = 96
_NOT_REPORTED: tuple[int, int] = (-1, 0)

# A shorter Retry-After never shortens a longer one already in force.
_PENALIZE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
"""


class RouteLimits(BaseModel):
    """Limits of one level: the whole source, or one route of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # At most rate_per_s * window_s calls in any window_s (a window is widened until it
    # holds one call: 0.5/s is one call in any 2 s).
    rate_per_s: float | None = Field(default=None, gt=0)
    window_s: float = Field(default=1.0, gt=0)
    # Calls that may go at once after a quiet spell; defaults to one window's worth. It
    # spreads calls within the window, and never lets more than the window's calls through.
    burst: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)

    def window(self) -> tuple[int, float]:
        """(calls, seconds): at most that many calls in any window that long; (0, 0) = none."""
        if not self.rate_per_s:
            return 0, 0.0
        calls = max(1, math.floor(self.rate_per_s * self.window_s + 1e-9))
        return calls, max(self.window_s, calls / self.rate_per_s)

    def _argv(self, slack_s: float, remaining: tuple[int, int]) -> list[float | int]:
        rate = self.rate_per_s or 0
        calls, window_s = self.window()
        burst = min(self.burst or calls, calls) if calls else 1
        window_ms = math.ceil((window_s + slack_s) * 1000) if calls else 0
        return [rate, burst, self.concurrency or 0, window_ms, calls, *remaining]


class Limits(RouteLimits):
    """A source's limits for one tenant; ``routes`` add limits of their own to some calls."""

    # Calls in any 24 hours (iCIMS sells 10,000 a day per integration licence): held over a
    # rolling day, it also holds over any calendar day, whichever time zone the ATS counts in.
    daily_quota: int | None = Field(default=None, ge=1)
    # Added to every level's window: the time between our grant and the ATS counting the
    # request varies (queues, network), and a window as long as the ATS's own would let a
    # call that was delayed and one that was not land in the same window of the ATS.
    window_slack_s: float = Field(default=0.1, ge=0, le=60)
    # What X-RateLimit-Remaining counts at this ATS: the source-level window ("window"), the
    # daily quota ("daily_quota"), or nothing we know of ("none": the header is ignored).
    rate_limit_headers: Literal["window", "daily_quota", "none"] = "none"
    routes: dict[str, RouteLimits] = Field(default_factory=dict)

    def override(self, raw: Mapping[str, Any] | None) -> Limits:
        """These limits with a connection's ``options["limits"]`` laid over them."""
        if not raw:
            return self
        merged: dict[str, Any] = {**self.model_dump(exclude={"routes"}), **raw}
        routes = {name: dict(r.model_dump()) for name, r in self.routes.items()}
        for name, route in (raw.get("routes") or {}).items():
            routes[name] = {**routes.get(name, {}), **route}
        merged["routes"] = routes
        return Limits.model_validate(merged)


LimitsResolver = Callable[[BudgetKey], Awaitable[Limits]]


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call's request to the budget: the script's keys and arguments, with its lease."""

    key: BudgetKey
    # penalty, calls-today, quota window, then per level: tokens, in-flight, window log (see
    # app/clients/scripts.py)
    keys: list[str]
    argv: list[float | int | str]

    @property
    def lease(self) -> str:
        """The id the call's concurrency slots are held under."""
        return str(self.argv[1])

    @property
    def inflight(self) -> list[str]:
        """The keys holding the call's concurrency slots, one per level."""
        return self.keys[4::LEVEL_KEYS]


class Prepaid:
    """A grant taken before the call that spends it, for the first slot under its key."""

    def __init__(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.claimed = False

    def claim(self, key: BudgetKey) -> bool:
        """Whether a slot under ``key`` may use this grant (once)."""
        if self.claimed or key != self.ticket.key:
            return False
        self.claimed = True
        return True


# The grant the running task took for its next call (see RedisBudget.slot and prepaid()).
_PREPAID: ContextVar[Prepaid | None] = ContextVar("hirehook_budget_prepaid", default=None)


@contextmanager
def prepaid(ticket: Ticket) -> Iterator[Prepaid]:
    """Within the block, the first slot under ``ticket.key`` taken by this task (or a task it
    starts) is already granted: the caller took the grant and gives the slot back."""
    grant = Prepaid(ticket)
    token = _PREPAID.set(grant)
    try:
        yield grant
    finally:
        _PREPAID.reset(token)


class RedisBudget:
    """The :class:`~app.clients.base.RateBudget` shared by every process through Redis."""

    def __init__(
        self,
        redis: Redis,
        limits: LimitsResolver,
        *,
        max_wait_s: float,
        lease_s: float,
        poll_s: float = 0.015,
        prefix: str = "hirehook:budget:",
        quota_window_s: float = QUOTA_WINDOW_S,
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._max_wait_s = max_wait_s
        self._lease_ms = max(1, int(lease_s * 1000))
        self._poll_ms = max(1, int(poll_s * 1000))
        self._prefix = prefix
        self._quota_ms = max(QUOTA_BUCKETS, int(quota_window_s * 1000))
        # The lowest X-RateLimit-Remaining each (tenant, source) reported since this process
        # last asked its budget, and when (epoch ms): written down with that next request.
        self._reported: dict[tuple[int, str], tuple[int, int]] = {}
        self._acquire = redis.register_script(_ACQUIRE)
        self._penalize = redis.register_script(_PENALIZE)

    def _base(self, key: BudgetKey) -> str:
        return f"{self._prefix}{key.source}:{key.tenant_id}"

    def calls_key(self, key: BudgetKey, day: str | None = None) -> str:
        """The Redis key counting this (tenant, source)'s calls on one UTC day."""
        day = day or datetime.now(UTC).strftime("%Y%m%d")
        return f"{self._base(key)}:calls:{day}"

    async def calls_today(self, key: BudgetKey) -> int:
        """Calls granted today, whoever made them."""
        raw = await self._redis.get(self.calls_key(key))
        return int(raw or 0)

    def observe(self, key: BudgetKey, remaining: int) -> None:
        """The ATS answered a call under ``key`` with ``X-RateLimit-Remaining: remaining``.

        Kept in this process and written down with the next grant it asks for under the same
        (tenant, source), in the same script call: no round trip of its own. Another process
        sharing the credential reads the same header on its own answers."""
        tenant_source = (key.tenant_id, key.source)
        known = self._reported.get(tenant_source)
        # The lowest is the one that holds back most; a later equal one holds back longer.
        if known is None or remaining <= known[0]:
            self._reported[tenant_source] = (max(0, remaining), int(time.time() * 1000))

    async def ticket(self, key: BudgetKey) -> Ticket:
        """What the budget's script needs to grant one call under ``key`` (a fresh lease)."""
        limits = await self._limits(key)
        reported = self._reported.pop((key.tenant_id, key.source), _NOT_REPORTED)
        levels: list[tuple[str, RouteLimits]] = [("*", limits)]
        if key.route != "*" and key.route in limits.routes:
            levels.append((key.route, limits.routes[key.route]))
        keys = [f"{self._base(key)}:penalty", self.calls_key(key), f"{self._base(key)}:quota"]
        argv: list[float | int | str] = [
            limits.daily_quota or 0,
            uuid.uuid4().hex,
            self._lease_ms,
            2 * 86400,
            self._poll_ms,
            self._quota_ms,
            self._quota_ms // QUOTA_BUCKETS,
            *(reported if limits.rate_limit_headers == "daily_quota" else _NOT_REPORTED),
        ]
        for route, level in levels:
            keys += [
                f"{self._base(key)}:{route}:tokens",
                f"{self._base(key)}:{route}:inflight",
                f"{self._base(key)}:{route}:window",
            ]
            counted = route == "*" and limits.rate_limit_headers == "window"
            argv += level._argv(limits.window_slack_s, reported if counted else _NOT_REPORTED)
        return Ticket(key, keys, argv)

    @asynccontextmanager
    async def slot(self, key: BudgetKey) -> AsyncIterator[None]:
        """Wait for permission to make one call, and hold a concurrency slot while it runs."""
        grant = _PREPAID.get()
        if grant is not None and grant.claim(key):
            # Granted with the cache probe that decided to fetch; whoever took it gives the
            # slot back (app/workers/fetch.py, with the document's store).
            yield
            return
        ticket = await self.ticket(key)
        granted = await self._wait(key, ticket.keys, ticket.argv)
        try:
            yield
        finally:
            if granted:
                await self.release(ticket)

    async def _wait(self, key: BudgetKey, keys: list[str], argv: list[float | int | str]) -> bool:
        waited = 0.0
        while True:
            try:
                wait_ms = int(await self._acquire(keys=keys, args=argv))
            except _REDIS_ERRORS as exc:
                # Workers cannot run without Redis anyway; an API process validating a request
                # should not fail for it either. The ATS's own 429s still hold us back.
                log.warning("budget.unavailable", budget=str(key), error=type(exc).__name__)
                return False
            if wait_ms <= 0:
                return True
            wait_s = wait_ms / 1000
            tenant = str(key.tenant_id)
            if waited + wait_s > self._max_wait_s:
                BUDGET_WAITS.labels(key.source, tenant, "deferred").inc()
                raise BudgetExhaustedError(key, wait_s)
            wait_s *= 1 + 0.2 * _jitter.random()
            BUDGET_WAITS.labels(key.source, tenant, "waited").inc()
            BUDGET_WAIT_SECONDS.labels(key.source, tenant).inc(wait_s)
            await asyncio.sleep(wait_s)
            waited += wait_s

    async def release(self, ticket: Ticket) -> None:
        """Give back the concurrency slot a granted ticket holds (best effort: it expires)."""
        inflight = ticket.inflight
        lease = ticket.lease
        try:
            if len(inflight) == 1:
                # The usual case (no route limits): a pipeline would only add its own cost.
                await self._redis.zrem(inflight[0], lease)
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in inflight:
                    pipe.zrem(key, lease)
                await pipe.execute()
        except _REDIS_ERRORS:
            # The lease expires on its own.
            return

    async def penalize(self, key: BudgetKey, retry_after_s: float) -> None:
        """Close this (tenant, source)'s budget for ``retry_after_s``, for every process."""
        ms = max(1, int(retry_after_s * 1000))
        try:
            await self._penalize(keys=[f"{self._base(key)}:penalty"], args=[ms])
        except _REDIS_ERRORS:
            return
        log.info("budget.penalized", budget=str(key), retry_after_s=retry_after_s)


class ConnectionLimits:
    """Resolves a (tenant, source)'s limits: the source's published defaults, then the
    connection's ``options["limits"]``; cached briefly so a busy worker does not ask each call."""

    def __init__(
        self,
        connections: ConnectionStore,
        defaults: Mapping[str, Limits],
        fallback: Limits,
        ttl_s: float,
    ) -> None:
        self._connections = connections
        self._defaults = defaults
        self._fallback = fallback
        self._ttl_s = ttl_s
        self._cache: TTLCache[tuple[int, str], Limits] = TTLCache(10_000, max(ttl_s, 1e-9))

    async def __call__(self, key: BudgetKey) -> Limits:
        """The limits that apply to calls under ``key``."""
        cache_key = (key.tenant_id, key.source)
        hit = self._cache.get(cache_key) if self._ttl_s > 0 else None
        if hit is not None:
            return hit
        connection = await self._connections.by_tenant_id(key.tenant_id, key.source)
        base = self._defaults.get(key.source, self._fallback)
        raw = connection.options.get("limits") if connection is not None else None
        try:
            limits = base.override(raw)
        except (ValidationError, TypeError, AttributeError) as exc:
            raise ApiError(
                f"{key.source}: options.limits is invalid", transient=False, config_problem=True
            ) from exc
        if self._ttl_s > 0:
            self._cache[cache_key] = limits
        return limits
