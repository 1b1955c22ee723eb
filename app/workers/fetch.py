"""Fetching what an event names by id: once per resource per burst, however many events name it.

A fetched document is cached in Redis with the time its request was sent. An event may use a
cached document sent no earlier than ``coalesce_window_s`` before the event was received: a
document asked for after the event arrived already reflects it, and the window lets the burst
of duplicates an ATS sends for one change share a single call. Concurrent misses coalesce on a
short Redis lock: one job fetches, the others wait for its document (or its error).

When the caller names the rate budget its call will spend, the probe that takes the lock also
takes the budget's grant, and the store that releases the lock gives the grant's slot back: a
fetched document costs two Redis round trips instead of four.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.exceptions import RedisError

from app.clients.base import ApiError, BudgetExhaustedError, BudgetKey, Document
from app.clients.budget import RedisBudget, Ticket, prepaid
from app.services import Services
from app.workers.context import RecordRow

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)
_POLL_S = 0.02
_USE, _FAIL, _FETCH = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Fetched:
    """A document and the microsecond its request was sent (its version)."""

    document: Any
    version: int
    from_cache: bool = False

    @property
    def fetched_at(self) -> datetime:
        """When the request was sent."""
        return datetime.fromtimestamp(self.version / 1_000_000, UTC)


Call = Callable[[], Awaitable[Document | Any]]


def not_before_us(services: Services, record: RecordRow) -> int:
    """The oldest fetch (in epoch microseconds) that may stand for this record's event."""
    received = record.received_at.timestamp() if record.received_at else time.time()
    return int((received - services.settings.coalesce_window_s) * 1_000_000)


async def fetch(
    services: Services,
    record: RecordRow,
    kind: str,
    external_id: str,
    call: Call,
    *,
    budget_key: BudgetKey | None = None,
    coalesce: bool = True,
) -> Fetched:
    """The record's view of one resource: cached if fresh enough, else fetched once for all.
    ``budget_key`` names the budget ``call`` spends, when it spends exactly one call of it;
    ``coalesce`` is the connection's ``options.coalesce``, read from its typed configuration
    by the source's handler."""
    if not coalesce:
        # A tenant may opt out: every event then costs its own call.
        return await _call(call)
    return await fetch_document(
        services,
        tenant_id=record.tenant_id,
        source=record.source,
        kind=kind,
        external_id=external_id,
        not_before=not_before_us(services, record),
        call=call,
        budget_key=budget_key,
    )


async def fetch_document(
    services: Services,
    *,
    tenant_id: int,
    source: str,
    kind: str,
    external_id: str,
    not_before: int,
    call: Call,
    budget_key: BudgetKey | None = None,
) -> Fetched:
    """Cache, then coalesce, then ``call``; see the module docstring."""
    cache = services.cache
    key = cache.key(tenant_id, source, kind, external_id)
    lock_ttl = services.settings.coalesce_lock_ttl_s
    lock_ms = max(1, int(lock_ttl * 1000))
    token = uuid.uuid4().hex
    started = int(time.time() * 1_000_000)
    deadline = time.monotonic() + 2 * lock_ttl
    ticket = await _ticket(services, budget_key)
    while True:
        try:
            outcome, payload, grant = await cache.probe(
                key,
                not_before=not_before,
                waiting_since=started,
                token=token,
                lock_ms=lock_ms,
                budget=None if ticket is None else (ticket.keys, ticket.argv),
            )
        except _REDIS_ERRORS:
            # Without Redis there is nothing to share; the budget still holds the ATS back.
            return await _call(call)
        if outcome == _USE:
            envelope = orjson.loads(payload)
            return Fetched(envelope.get("doc"), int(envelope["v"]), from_cache=True)
        if outcome == _FAIL:
            raise _shared_error(orjson.loads(payload))
        if outcome == _FETCH:
            # Not granted (a wait, a spent quota): the call asks the budget itself, and waits.
            granted = ticket if grant == 0 else None
            return await _fetch_and_store(services, key, token, call, granted)
        if time.monotonic() > deadline:
            raise ApiError(f"{source} {kind}: a concurrent fetch did not finish", transient=True)
        await asyncio.sleep(_POLL_S)


async def _fetch_and_store(
    services: Services, key: str, token: str, call: Call, granted: Ticket | None
) -> Fetched:
    cache = services.cache
    try:
        if granted is None:
            fetched = await _call(call)
        else:
            with prepaid(granted):
                fetched = await _call(call)
    except BaseException as exc:
        if isinstance(exc, ApiError) and not isinstance(exc, BudgetExhaustedError):
            await cache.share_error(key, _error_body(exc), services.settings.coalesce_lock_ttl_s)
        await cache.unlock(key, token)
        await _release(services, granted)
        raise
    # One round trip: the waiters polling the lock find the document as it is released, and
    # the grant's slot is given back with it.
    stored = await cache.put(
        key,
        fetched.document,
        fetched.version,
        unlock=token,
        release=None if granted is None else (granted.inflight, granted.lease),
    )
    if not stored:
        # Not stored because a newer version was cached (the lock and the slot are already
        # released) or because Redis failed, in which case both are tried again (they expire
        # anyway).
        await cache.unlock(key, token)
        await _release(services, granted)
    return fetched


async def _ticket(services: Services, key: BudgetKey | None) -> Ticket | None:
    budget = services.budget
    if key is None or not isinstance(budget, RedisBudget):
        return None
    try:
        return await budget.ticket(key)
    except ApiError:
        # Limits the connection cannot have (options.limits): the call's own slot reports
        # them, when there is a call to make, as for any fetch.
        return None


async def _release(services: Services, granted: Ticket | None) -> None:
    if granted is not None and isinstance(services.budget, RedisBudget):
        await services.budget.release(granted)


async def _call(call: Call) -> Fetched:
    started = time.time()
    result = await call()
    if isinstance(result, Document):
        return Fetched(result.body, int(result.requested_at * 1_000_000))
    return Fetched(result, int(started * 1_000_000))


def _error_body(exc: ApiError) -> bytes:
    return orjson.dumps(
        {
            "at": int(time.time() * 1_000_000),
            "message": str(exc),
            "status": exc.status,
            "transient": exc.transient,
            "config_problem": exc.config_problem,
            "retry_after_s": exc.retry_after_s,
        }
    )


def _shared_error(error: dict[str, Any]) -> ApiError:
    # Only a failure recorded after this job began waiting reaches here (see _PROBE): an older
    # one is what retrying is for.
    return ApiError(
        str(error.get("message", "fetch failed")),
        status=error.get("status"),
        transient=bool(error.get("transient")),
        config_problem=bool(error.get("config_problem")),
        retry_after_s=error.get("retry_after_s"),
    )
