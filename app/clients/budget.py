"""One rate budget per (tenant, ATS), kept in Redis so every worker and API process shares it.

Each call takes a token from a bucket (rate and burst), a slot under a concurrency cap (for the
whole source and, optionally, for one route), and counts towards a daily quota; all of it is
decided in one Lua script, so two processes can never both take the last token. A 429 from the
ATS closes the budget for its ``Retry-After``. Running out never fails a call: it waits, and a
wait longer than ``max_wait_s`` becomes :class:`BudgetExhaustedError`, which workers turn into a
deferred retry that does not count as an attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clients.base import ApiError, BudgetExhaustedError, BudgetKey
from app.clients.scripts import BUDGET_FUNCTIONS
from app.connections import ConnectionStore
from app.metrics import BUDGET_WAIT_SECONDS, BUDGET_WAITS

log = structlog.get_logger(__name__)

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)
# Jitter only spreads waiters apart; it protects nothing.
_jitter = random.Random()  # noqa: S311

# KEYS and ARGV as ``acquire`` in app/clients/scripts.py takes them (offsets 0).
_ACQUIRE = BUDGET_FUNCTIONS + "return acquire(0, 0)\n"

# A shorter Retry-After never shortens a longer one already in force.
_PENALIZE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
"""


class RouteLimits(BaseModel):
    """Limits of one level: the whole source, or one route of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_per_s: float | None = Field(default=None, gt=0)
    # Tokens that may be spent at once after a quiet spell; defaults to one second's worth.
    burst: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)

    def _argv(self) -> list[float | int]:
        rate = self.rate_per_s or 0
        burst = self.burst or max(1, int(rate))
        return [rate, burst, self.concurrency or 0]


class Limits(RouteLimits):
    """A source's limits for one tenant; ``routes`` add limits of their own to some calls."""

    # Calls per UTC day (iCIMS sells 10,000 a day per integration licence).
    daily_quota: int | None = Field(default=None, ge=1)
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


def seconds_to_utc_midnight(now: float | None = None) -> float:
    """Seconds until the daily quota starts over."""
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    midnight = (current + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - current).total_seconds()


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call's request to the budget: the script's keys and arguments, with its lease."""

    key: BudgetKey
    # penalty, calls-today, then per level: tokens, in-flight (see app/clients/scripts.py)
    keys: list[str]
    argv: list[float | int | str]

    @property
    def lease(self) -> str:
        """The id the call's concurrency slots are held under."""
        return str(self.argv[1])

    @property
    def inflight(self) -> list[str]:
        """The keys holding the call's concurrency slots, one per level."""
        return self.keys[3::2]


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
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._max_wait_s = max_wait_s
        self._lease_ms = max(1, int(lease_s * 1000))
        self._poll_ms = max(1, int(poll_s * 1000))
        self._prefix = prefix
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

    async def ticket(self, key: BudgetKey) -> Ticket:
        """What the budget's script needs to grant one call under ``key`` (a fresh lease)."""
        limits = await self._limits(key)
        levels: list[tuple[str, RouteLimits]] = [("*", limits)]
        if key.route != "*" and key.route in limits.routes:
            levels.append((key.route, limits.routes[key.route]))
        keys = [f"{self._base(key)}:penalty", self.calls_key(key)]
        argv: list[float | int | str] = [
            limits.daily_quota or 0,
            uuid.uuid4().hex,
            self._lease_ms,
            2 * 86400,
            self._poll_ms,
        ]
        for route, level in levels:
            keys += [f"{self._base(key)}:{route}:tokens", f"{self._base(key)}:{route}:inflight"]
            argv += level._argv()
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
            if wait_ms == 0:
                return True
            wait_s = seconds_to_utc_midnight() if wait_ms < 0 else wait_ms / 1000
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
