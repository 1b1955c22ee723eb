"""What every ATS API client shares: one rate budget, one document cache, one error model.

The router (in-request validation) and the workers (enrichment) call the same client, so a
tenant's API quota is spent in one place whoever spends it.
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clients.scripts import BUDGET_FUNCTIONS
from app.metrics import ATS_CALLS, ATS_RATE_LIMITED


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Whose quota a call spends: one tenant's connection to one ATS, optionally one route
    (SmartRecruiters limits ``GET /candidates`` to one call at a time)."""

    tenant_id: int
    source: str
    route: str = "*"

    def __str__(self) -> str:
        return f"{self.source}:{self.tenant_id}:{self.route}"


class RateBudget(Protocol):
    """Permission to make one call; shared by every process through Redis."""

    def slot(self, key: BudgetKey) -> AbstractAsyncContextManager[None]:
        """Wait for a token (and a concurrency slot) for the duration of one call."""
        ...

    async def penalize(self, key: BudgetKey, retry_after_s: float) -> None:
        """The ATS said 429: nobody spends this budget until ``retry_after_s`` has passed."""
        ...

    def observe(self, key: BudgetKey, remaining: int) -> None:
        """The ATS answered with ``X-RateLimit-Remaining: remaining`` (no I/O: recorded with
        the next grant)."""
        ...


class UnlimitedBudget:
    """No limits; for unit tests and for sources without a published limit."""

    @asynccontextmanager
    async def slot(self, key: BudgetKey) -> AsyncIterator[None]:
        """Always granted."""
        del key
        yield

    async def penalize(self, key: BudgetKey, retry_after_s: float) -> None:
        """Ignored."""
        del key, retry_after_s

    def observe(self, key: BudgetKey, remaining: int) -> None:
        """Ignored."""
        del key, remaining


# Every cache operation in one script, registered once per process. KEYS: document, error,
# lock, then (probe) a rate budget's keys or (put) the in-flight keys of its grant. ARGV[1] is
# the operation:
#   put    ARGV: envelope, version, ttl ms[, lock token or ''[, lease]] -> 1 if stored (an
#          older version never replaces a newer one); with a token, also releases the lock it
#          holds; with a lease, also gives back the budget slots it holds
#   probe  ARGV: oldest usable version, wait start, lock token, lock ms[, budget ARGV] ->
#          {1, doc}: use it; {2, err}: fail with the error of the fetch this job waited for;
#          {3, '', grant}: fetch it, holding the lock, with grant as ``acquire`` returns it
#          when a budget was given (0: granted); {0, ''}: wait
#   unlock ARGV: lock token -> 0 (releases the lock only if this token still holds it)
# acquire and release: app/clients/scripts.py.
_CACHE = (
    BUDGET_FUNCTIONS
    + """
local op = ARGV[1]
local function newer_or_equal(raw, version)
  local ok, envelope = pcall(cjson.decode, raw)
  return ok and type(envelope) == 'table' and tonumber(envelope['v'])
         and tonumber(envelope['v']) >= tonumber(version)
end
local function unlock(token)
  if redis.call('GET', KEYS[3]) == token then redis.call('DEL', KEYS[3]) end
end
if op == 'put' then
  if ARGV[5] and ARGV[5] ~= '' then unlock(ARGV[5]) end
  if ARGV[6] then release(4, 1, ARGV[6]) end
  local current = redis.call('GET', KEYS[1])
  if current and newer_or_equal(current, ARGV[3]) then return 0 end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
  return 1
elseif op == 'probe' then
  local doc = redis.call('GET', KEYS[1])
  if doc and newer_or_equal(doc, ARGV[2]) then return {1, doc} end
  local err = redis.call('GET', KEYS[2])
  if err then
    local ok, failure = pcall(cjson.decode, err)
    if ok and type(failure) == 'table' and tonumber(failure['at'])
       and tonumber(failure['at']) >= tonumber(ARGV[3]) then
      return {2, err}
    end
  end
  if redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5]) then
    if #KEYS > 3 then return {3, '', acquire(3, 5)} end
    return {3, ''}
  end
  return {0, ''}
elseif op == 'unlock' then
  unlock(ARGV[2])
  return 0
end
return redis.error_reply('unknown cache operation')
"""
)
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _glob_escape(value: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in value)


class DocumentCache:
    """Fetched documents in Redis with a TTL, as ``{"v": version, "doc": document}``.

    The version is the microsecond the request was sent, so an older fetch never replaces a
    newer one. A miss or a Redis fault just means fetching. The key of a document is built
    here only (:meth:`key`), and every operation is one call of one script.
    """

    def __init__(self, redis: Redis, ttl_s: float, prefix: str = "hirehook:doc:") -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._script = redis.register_script(_CACHE)

    def key(self, tenant_id: int, source: str, kind: str, external_id: str) -> str:
        """The cache key of one document."""
        return f"{self._prefix}{source}:{tenant_id}:{kind}:{external_id}"

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [key, f"{key}:error", f"{key}:lock"]

    async def forget(self, tenant_id: int, source: str, external_ids: Collection[str]) -> int:
        """Delete the cached documents (with their errors and locks) of these external ids,
        whatever their kind; the number of keys deleted. Raises on a Redis fault: an erasure
        must know whether it happened.

        Scans the tenant's keys of this source: a cached id may be a reference that wraps the
        external id (iCIMS ``customer/id?fields=...``), and erasures are rare.
        """
        wanted = set(external_ids)
        if not wanted:
            return 0
        head = f"{self._prefix}{source}:{tenant_id}:"
        doomed = []
        async for raw in self._redis.scan_iter(match=_glob_escape(head) + "*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            # {kind}:{reference}[:error|:lock]
            reference = key[len(head) :].split(":", 1)[-1]
            for suffix in (":error", ":lock"):
                reference = reference.removesuffix(suffix)
            if reference in wanted or reference.split("?", 1)[0].rsplit("/", 1)[-1] in wanted:
                doomed.append(key)
        for start in range(0, len(doomed), 500):
            await self._redis.delete(*doomed[start : start + 500])
        return len(doomed)

    async def get(self, key: str) -> Any | None:
        """The cached envelope ``{"v", "doc"}``, or None."""
        try:
            raw = await self._redis.get(key)
        except _REDIS_ERRORS:
            return None
        return None if raw is None else orjson.loads(raw)

    async def put(
        self,
        key: str,
        document: Any,
        version: int,
        ttl_s: float | None = None,
        *,
        unlock: str | None = None,
        release: tuple[Sequence[str], str] | None = None,
    ) -> bool:
        """Cache ``document`` unless a newer version is cached (best effort); with ``unlock``,
        also release the fetch lock that token holds (:meth:`unlock`), and with ``release``
        (in-flight keys, lease), give back the budget slots the fetch's grant holds, in the
        same call."""
        ttl_ms = self._ttl_ms if ttl_s is None else max(1, int(ttl_s * 1000))
        envelope = orjson.dumps({"v": version, "doc": document})
        keys = self._keys(key)
        args: list[Any] = ["put", envelope, version, ttl_ms]
        if unlock is not None or release is not None:
            args.append(unlock or "")
        if release is not None:
            keys += release[0]
            args.append(release[1])
        try:
            stored = await self._script(keys=keys, args=args)
        except _REDIS_ERRORS:
            return False
        return bool(stored)

    async def probe(
        self,
        key: str,
        *,
        not_before: int,
        waiting_since: int,
        token: str,
        lock_ms: int,
        budget: tuple[Sequence[str], Sequence[Any]] | None = None,
    ) -> tuple[int, bytes, int | None]:
        """One step of a coalesced fetch (see the script): (outcome, payload, grant). With
        ``budget`` (a rate budget's keys and arguments), a fetch outcome also asks it for the
        call, and grant is its answer (0: granted, else as the budget's script answers);
        otherwise grant is None. Raises Redis errors: without Redis the caller fetches on its
        own."""
        keys = self._keys(key)
        args: list[Any] = ["probe", not_before, waiting_since, token, lock_ms]
        if budget is not None:
            keys += budget[0]
            args += budget[1]
        answer = await self._script(keys=keys, args=args)
        grant = int(answer[2]) if len(answer) > 2 else None
        return int(answer[0]), bytes(answer[1]), grant

    async def unlock(self, key: str, token: str) -> None:
        """Release the fetch lock if ``token`` still holds it (best effort: it expires)."""
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._script(keys=self._keys(key), args=["unlock", token])

    async def share_error(self, key: str, error: bytes, ttl_s: float) -> None:
        """Let jobs waiting on a fetch fail with its error instead of each repeating the call."""
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._redis.set(f"{key}:error", error, px=max(1, int(ttl_s * 1000)))


class ApiError(Exception):
    """A failed ATS API call, classified for retry and dead-letter decisions."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool,
        config_problem: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        # Worth retrying: transport errors, timeouts, 429 and 5xx.
        self.transient = transient
        # The tenant must fix something (credentials, permissions), not the pipeline.
        self.config_problem = config_problem
        self.retry_after_s = retry_after_s


class BudgetExhaustedError(ApiError):
    """The rate budget cannot grant a call soon enough; the work waits, it has not failed."""

    def __init__(self, key: BudgetKey, wait_s: float) -> None:
        super().__init__(
            f"{key.source}: rate budget exhausted for {wait_s:.1f}s",
            transient=True,
            retry_after_s=wait_s,
        )
        self.key = key


@dataclass(frozen=True, slots=True)
class Document:
    """A fetched JSON document and when its request was sent (seconds since the epoch).

    The send time, not the arrival time, orders two fetches of one resource: whichever was
    asked later saw the later state, however slowly it came back.
    """

    body: Any
    requested_at: float


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def rate_limit_remaining(response: httpx.Response) -> int | None:
    """``X-RateLimit-Remaining`` as a count, or None when absent or not a number."""
    value = response.headers.get("x-ratelimit-remaining")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def classify(response: httpx.Response, what: str) -> ApiError:
    """The :class:`ApiError` for a non-2xx response."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        return ApiError(
            f"{what}: rate limited", status=status, transient=True, retry_after_s=retry_after
        )
    if status >= 500:
        return ApiError(
            f"{what}: server error {status}",
            status=status,
            transient=True,
            retry_after_s=retry_after,
        )
    if status in (401, 403):
        return ApiError(
            f"{what}: credentials refused ({status})",
            status=status,
            transient=False,
            config_problem=True,
        )
    return ApiError(f"{what}: {status}", status=status, transient=False)


class ApiClient:
    """Base for ATS clients: every call spends the shared budget and is classified on failure."""

    def __init__(self, http: httpx.AsyncClient, budget: RateBudget, budget_key: BudgetKey) -> None:
        self.http = http
        self.budget = budget
        self.budget_key = budget_key

    async def request(
        self, method: str, url: str, *, what: str, route: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One call under the budget; raises :class:`ApiError` for anything but 2xx."""
        key = (
            self.budget_key
            if route is None
            else BudgetKey(self.budget_key.tenant_id, self.budget_key.source, route)
        )
        tenant = str(key.tenant_id)
        try:
            async with self.budget.slot(key):
                response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            ATS_CALLS.labels(key.source, tenant, "error").inc()
            raise ApiError(f"{what}: timed out", transient=True) from exc
        except httpx.TransportError as exc:
            ATS_CALLS.labels(key.source, tenant, "error").inc()
            raise ApiError(f"{what}: {type(exc).__name__}", transient=True) from exc
        status = response.status_code
        ATS_CALLS.labels(key.source, tenant, "429" if status == 429 else f"{status // 100}xx").inc()
        remaining = rate_limit_remaining(response)
        if remaining is not None:
            # What the ATS counts, which may include calls made outside this budget (another
            # integration on the same credential): the next grant takes it into account.
            self.budget.observe(key, remaining)
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if status == 429:
                ATS_RATE_LIMITED.labels(key.source, tenant).inc()
                await self.budget.penalize(key, retry_after or 1.0)
            elif retry_after:
                # Unavailable for a stated time: every process waits it out, not only this job.
                await self.budget.penalize(key, retry_after)
        if not response.is_success:
            raise self.error_for(response, what)
        return response

    def error_for(self, response: httpx.Response, what: str) -> ApiError:
        """The error for a non-2xx response; clients that know their ATS's error body override."""
        return classify(response, what)

    async def get_json(
        self, url: str, *, what: str, route: str | None = None, **kwargs: Any
    ) -> Any:
        """GET a JSON document."""
        return (await self.get_document(url, what=what, route=route, **kwargs)).body

    async def get_document(
        self, url: str, *, what: str, route: str | None = None, **kwargs: Any
    ) -> Document:
        """GET a JSON document, stamped with when the request was sent."""
        response = await self.request("GET", url, what=what, route=route, **kwargs)
        # elapsed runs from sending the request to reading the body; the budget wait is excluded.
        requested_at = time.time() - response.elapsed.total_seconds()
        try:
            return Document(response.json(), requested_at)
        except ValueError as exc:
            raise ApiError(
                f"{what}: response is not JSON", status=response.status_code, transient=True
            ) from exc
