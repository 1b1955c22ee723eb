"""A brute-force guard for inbound credentials (OAuth token endpoint, HTTP Basic, HMAC, keys).

Authentication failures are counted per *subject* in Redis, so every API replica shares them.
A subject is an identity that can be guessed against, written without any secret: a client
(``client_subject("icims", "client", client_id)`` → ``"icims:client:<id>"``) or a source address
(``address_subject(ip)`` → ``"addr:<ip>"``). A subject with too many failures inside a window is
blocked for a cool-off.

Subjects are names anyone can use: a Basic username or an OAuth client id is no secret, and an
ATS sends for all its customers from a few shared addresses, where any of those customers can
point a webhook with a wrong secret at us. So the guard only ever judges *failures*: a route
checks the credentials first (cheaply, in constant time) and tells the guard only when they
are wrong. A request with the right credentials never reaches the guard, so it is never
refused nor held, whatever its address or identity did before. A block means that a subject's
failures are answered 429 with ``Retry-After`` instead of 401, held before they are sent, and
their connection closed: a guesser's rate is then one guess per held answer, and the held
answers are capped per process so a flood of them cannot take every connection.

Healthy traffic pays nothing: it never calls the guard. Without Redis the guard counts
failures in process, so one replica still stops a brute-forcer; it never raises to its caller
and never waits longer than its timeout.

Typical use in a route, with one ``limiter`` per process from
:meth:`FailureLimiter.from_settings`::

    subjects = (client_subject("icims", "client", client_id), address_subject(peer_ip))
    if not verify(credentials):                  # right credentials: the guard is not asked
        wait = await limiter.failed(*subjects)
        await limiter.hold(*subjects, blocked=wait is not None)   # slows a flood of refusals
        if wait is not None:
            return 429 with Retry-After: retry_after(wait)
        return 401
    ...authenticated
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from cachetools import TTLCache
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.platform.settings import Settings

log = structlog.get_logger(__name__)

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)

ADDRESS_PREFIX = "addr:"
_JITTER = random.Random()  # noqa: S311 - spreads delays in time, guards no secret
# Subjects carry request data (a client id from a header or form); a long one is cut and
# hashed so neither Redis keys nor the in-process caches grow with what a client sends.
_MAX_SUBJECT_CHARS = 128
_KEPT_PREFIX_CHARS = 64

# A fixed window that opens at a subject's first failure (INCR, PEXPIRE when the counter has
# no expiry yet) rather than a sliding log: one small counter per subject whatever the attack
# rate, where a sliding log stores an entry per failure, i.e. memory the attacker controls. Its
# imprecision, at most twice the limit across a window boundary, does not matter here: the
# point is turning hundreds of guesses a second into a few dozen per window plus cool-off.
# The counter is dropped when a block starts, so a subject comes out of it with a clean slate,
# and failures reported while blocked are not counted: the block is never extended, so a
# subject that keeps failing comes out of it on time, and its failures meanwhile cost a held
# 429 each.
#
# KEYS: per subject, its failure counter then its block marker.
# ARGV: per subject, failures tolerated, window ms, block ms.
# Returns per subject: ms of block left (0 = not blocked), then 1 if this call started it.
_RECORD = """
local out = {}
for i = 1, #KEYS / 2 do
  local counter, block = KEYS[2 * i - 1], KEYS[2 * i]
  local tolerated = tonumber(ARGV[3 * i - 2])
  local window_ms = tonumber(ARGV[3 * i - 1])
  local block_ms = tonumber(ARGV[3 * i])
  local left = redis.call('PTTL', block)
  if left > 0 then
    out[2 * i - 1] = left
    out[2 * i] = 0
  else
    local n = redis.call('INCR', counter)
    if redis.call('PTTL', counter) < 0 then redis.call('PEXPIRE', counter, window_ms) end
    if n > tolerated then
      redis.call('SET', block, '1', 'PX', block_ms)
      redis.call('DEL', counter)
      out[2 * i - 1] = block_ms
      out[2 * i] = 1
    else
      out[2 * i - 1] = 0
      out[2 * i] = 0
    end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class FailureLimit:
    """``failures`` are tolerated within ``window_s``; the next one blocks for ``block_s``."""

    failures: int
    window_s: float
    block_s: float

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window_s <= 0 or self.block_s <= 0:
            raise ValueError("a failure limit needs failures >= 1, window_s > 0, block_s > 0")


@dataclass(slots=True)
class _LocalCount:
    """The in-process fallback's view of one subject while Redis cannot be reached."""

    window_ends: float
    count: int = 0
    blocked_until: float = 0.0


def client_subject(source: str, kind: str, ident: str) -> str:
    """The subject of one client identity, e.g. ``("keldair", "tenant", slug)``."""
    return f"{source}:{kind}:{ident}"


def address_subject(address: str) -> str:
    """The subject of one source address."""
    return ADDRESS_PREFIX + address


def retry_after(wait_s: float) -> str:
    """A ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


def _normalize(subject: str) -> str:
    if len(subject) <= _MAX_SUBJECT_CHARS:
        return subject
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{subject[:_KEPT_PREFIX_CHARS]}#{digest}"


class FailureLimiter:
    """Counts authentication failures per subject in Redis and blocks subjects that fail too
    often; see the module docstring for how a route uses it.

    Subjects starting with ``addr:`` get ``per_address`` (``None`` ignores them), all others
    ``per_client``.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        per_client: FailureLimit,
        per_address: FailureLimit | None,
        timeout_s: float,
        prefix: str = "hirehook:authfail:",
        cache_ttl_s: float = 1.0,
        cache_size: int = 10_000,
        fallback_size: int = 10_000,
        redis_retry_s: float = 1.0,
        delay_s: float = 0.0,
        delay_after: int = 0,
        max_held: int = 0,
        delay_above_per_s: int = 0,
    ) -> None:
        self._redis = redis
        self._per_client = per_client
        self._per_address = per_address
        self._timeout_s = timeout_s
        self._prefix = prefix
        self._record = redis.register_script(_RECORD)
        # Subject → monotonic end of its block, 0.0 when Redis said it was not blocked. A block
        # set by another replica is therefore seen here at most cache_ttl_s late.
        self._view: TTLCache[str, float] = TTLCache(maxsize=cache_size, ttl=cache_ttl_s)
        longest = max(
            limit.window_s + limit.block_s for limit in (per_client, per_address) if limit
        )
        # Bounded by size, and an entry outlives neither its window nor its block.
        self._fallback: TTLCache[str, _LocalCount] = TTLCache(maxsize=fallback_size, ttl=longest)
        # After a Redis error the next requests skip Redis for redis_retry_s: during an outage
        # where connections hang, only one request per interval pays the timeout, not all.
        self._redis_retry_s = redis_retry_s
        self._redis_down_until = 0.0
        self._redis_down = False
        # Failures per subject seen by this process, for holding answers (hold()): a local
        # count is enough, since it only decides how fast a refusal is sent, never whether.
        self._delay_s = delay_s
        self._delay_after = delay_after
        self._max_held = max_held
        self._held = 0
        # Answers held so far, for tests and operators: a request that authenticated never
        # adds to it.
        self.held_total = 0
        self._delay_above_per_s = delay_above_per_s
        # Failures in the current whole second of the monotonic clock, every subject together.
        self._second = 0
        self._in_second = 0
        window = max(limit.window_s for limit in (per_client, per_address) if limit)
        self._recent: TTLCache[str, int] = TTLCache(maxsize=cache_size, ttl=window)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> FailureLimiter:
        """A limiter configured by the ``auth_*`` settings."""
        window_s, block_s = settings.auth_failure_window_s, settings.auth_block_s
        per_address = settings.auth_failure_limit_per_address
        return cls(
            redis,
            per_client=FailureLimit(settings.auth_failure_limit_per_client, window_s, block_s),
            per_address=FailureLimit(per_address, window_s, block_s) if per_address else None,
            timeout_s=settings.redis_timeout_s,
            delay_s=settings.auth_failure_delay_s,
            delay_after=settings.auth_failure_delay_after,
            max_held=settings.auth_failure_delay_max_held,
            delay_above_per_s=settings.auth_failure_delay_above_per_s,
        )

    async def check(self, *subjects: str) -> float | None:
        """Seconds to wait if any subject is blocked, else ``None``: what a failure of theirs
        would be told. Never a reason to refuse a request before its credentials are checked
        (see the module docstring); :meth:`failed` answers the same for a failure.

        Answered from the in-process view when it is fresh or already knows a subject to be
        blocked; otherwise one Redis round trip for all the subjects it lacks.
        """
        wanted = self._subjects(subjects)
        now = time.monotonic()
        wait = max((self._fallback_wait(s, now) for s in wanted), default=0.0)
        unknown: list[str] = []
        for subject in wanted:
            until = self._view.get(subject)
            if until is None:
                unknown.append(subject)
            else:
                wait = max(wait, until - now)
        # One subject known to be blocked settles it: a blocked address sending under ever
        # new client ids must not cost a Redis round trip per request. The wait may then be
        # shorter than another subject's; the next request is simply refused again.
        if unknown and wait <= 0 and self._redis_usable():
            try:
                async with asyncio.timeout(self._timeout_s):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for subject in unknown:
                            pipe.pttl(self._block_key(subject))
                        left_ms = await pipe.execute()
            except _REDIS_ERRORS as exc:
                self._redis_failed(exc)
            else:
                self._redis_answered()
                now = time.monotonic()
                for subject, ms in zip(unknown, left_ms, strict=True):
                    # -2 (no block) and -1 (a marker without expiry, which this module never
                    # writes) both read as "not blocked": a block must always end.
                    left = max(0, int(ms)) / 1000
                    self._view[subject] = now + left if left else 0.0
                    wait = max(wait, left)
        return wait if wait > 0 else None

    async def failed(self, *subjects: str) -> float | None:
        """Record one authentication failure for each subject.

        Returns the seconds to wait if, after this failure, any subject is blocked (this
        failure started the block, or another replica had already), else ``None``.
        """
        self.refused(*subjects)
        wanted = self._subjects(subjects)
        if not wanted:
            return None
        if self._redis_usable():
            keys: list[str] = []
            args: list[int] = []
            for subject in wanted:
                limit = self._limit(subject)
                assert limit is not None
                keys += [self._counter_key(subject), self._block_key(subject)]
                args += [limit.failures, _ms(limit.window_s), _ms(limit.block_s)]
            try:
                async with asyncio.timeout(self._timeout_s):
                    reply = await self._record(keys=keys, args=args)
            except _REDIS_ERRORS as exc:
                self._redis_failed(exc)
            else:
                self._redis_answered()
                return self._apply(wanted, [int(x) for x in reply])
        return self._count_locally(wanted, time.monotonic())

    def refused(self, *subjects: str) -> None:
        """Count a refusal of a request that had not authenticated (a failed credential, or a
        body refused before its credential could be checked) towards holding answers only:
        it never counts towards a block, which only failed credentials start."""
        for subject in dict.fromkeys(_normalize(s) for s in subjects):
            self._recent[subject] = self._recent.get(subject, 0) + 1
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._in_second = second, 0
        self._in_second += 1

    async def hold(self, *subjects: str, blocked: bool = False) -> None:
        """Hold a refusal's answer for the configured delay (± 25 %) when the subjects have failed
        more than ``delay_after`` times lately, are ``blocked``, or this process has refused
        more than ``delay_above_per_s`` requests this second (a flood from many addresses);
        return at once otherwise, or when this process already holds ``max_held`` answers.
        Only for refusals: an authenticated request is never held.

        Every refusal of one subject is treated alike, whatever its reason, so the delay
        tells nothing about which credential was wrong or whether a tenant exists.
        """
        if self._delay_s <= 0 or self._held >= self._max_held:
            return
        if not blocked and not self._flooded():
            seen = max((self._recent.get(_normalize(s), 0) for s in subjects), default=0)
            if seen <= self._delay_after:
                return
        self._held += 1
        self.held_total += 1
        try:
            # Spread by a quarter either way: held answers released together would bring their
            # senders back together, and refusals would then arrive in bursts.
            await asyncio.sleep(self._delay_s * _JITTER.uniform(0.75, 1.25))
        finally:
            self._held -= 1

    def _flooded(self) -> bool:
        """Whether this process has refused more than ``delay_above_per_s`` this second."""
        return (
            self._delay_above_per_s > 0
            and self._in_second > self._delay_above_per_s
            and int(time.monotonic()) == self._second
        )

    def _apply(self, subjects: list[str], reply: list[int]) -> float | None:
        now = time.monotonic()
        wait = 0.0
        for i, subject in enumerate(subjects):
            left = max(0, reply[2 * i]) / 1000
            self._view[subject] = now + left if left else 0.0
            if reply[2 * i + 1]:
                log.warning("auth_guard.blocked", subject=subject, block_s=left, shared=True)
            wait = max(wait, left, self._fallback_wait(subject, now))
        return wait if wait > 0 else None

    def _count_locally(self, subjects: list[str], now: float) -> float | None:
        wait = 0.0
        for subject in subjects:
            limit = self._limit(subject)
            assert limit is not None
            entry = self._fallback.get(subject)
            if entry is not None and entry.blocked_until > now:
                wait = max(wait, entry.blocked_until - now)
                continue
            if entry is None or entry.window_ends <= now:
                entry = _LocalCount(window_ends=now + limit.window_s)
            entry.count += 1
            if entry.count > limit.failures:
                # Like the Redis script: the count starts over once the block ends.
                entry = _LocalCount(window_ends=now, blocked_until=now + limit.block_s)
                log.warning(
                    "auth_guard.blocked", subject=subject, block_s=limit.block_s, shared=False
                )
                wait = max(wait, limit.block_s)
            # Assigning again restarts the entry's TTL, so it lives as long as it matters.
            self._fallback[subject] = entry
        return wait if wait > 0 else None

    def _fallback_wait(self, subject: str, now: float) -> float:
        entry = self._fallback.get(subject)
        if entry is None or entry.blocked_until <= now:
            return 0.0
        return entry.blocked_until - now

    def _subjects(self, subjects: Iterable[str]) -> list[str]:
        normalized = (_normalize(s) for s in subjects)
        return [s for s in dict.fromkeys(normalized) if self._limit(s) is not None]

    def _limit(self, subject: str) -> FailureLimit | None:
        return self._per_address if subject.startswith(ADDRESS_PREFIX) else self._per_client

    def _counter_key(self, subject: str) -> str:
        return f"{self._prefix}{subject}:n"

    def _block_key(self, subject: str) -> str:
        return f"{self._prefix}{subject}:block"

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + self._redis_retry_s
        if not self._redis_down:
            self._redis_down = True
            log.warning("auth_guard.redis_unavailable", error=type(exc).__name__)

    def _redis_answered(self) -> None:
        if self._redis_down:
            self._redis_down = False
            log.info("auth_guard.redis_back")


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
