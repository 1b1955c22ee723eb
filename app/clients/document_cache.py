"""The document cache every ATS API client shares: fetched documents in Redis, versioned so an
older fetch never replaces a newer one, with the fetch lock that coalesces concurrent jobs'
fetches of one document."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clients.scripts import BUDGET_FUNCTIONS

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
