"""What every ATS API client shares: one rate budget and one error model (the document
cache they share is :mod:`app.clients.document_cache`).

The router (in-request validation) and the workers (enrichment) call the same client, so a
tenant's API quota is spent in one place whoever spends it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from app.clients.http import Answer, send_once
from app.platform.metrics import ATS_CALLS, ATS_RATE_LIMITED, Children

# Sources, tenants and status classes: a known set, each child kept for the process anyway.
_ATS_CALLS = Children(ATS_CALLS)


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


class Reply(Protocol):
    """What the error model reads of an answer: :class:`~app.clients.http.Answer` or an
    ``httpx.Response`` (the iCIMS token exchange's)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def rate_limit_remaining(response: Reply) -> int | None:
    """``X-RateLimit-Remaining`` as a count, or None when absent or not a number."""
    value = response.headers.get("x-ratelimit-remaining")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def classify(response: Reply, what: str) -> ApiError:
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

    def key_for(self, route: str | None = None) -> BudgetKey:
        """The budget a call on ``route`` (None: no route of its own) spends."""
        if route is None:
            return self.budget_key
        return BudgetKey(self.budget_key.tenant_id, self.budget_key.source, route)

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        route: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeouts: httpx.Timeout | None = None,
    ) -> Answer:
        """One call under the budget; raises :class:`ApiError` for anything but 2xx."""
        key = self.key_for(route)
        tenant = str(key.tenant_id)
        try:
            async with self.budget.slot(key):
                response = await send_once(
                    self.http, method, url, headers=headers or {}, params=params, timeouts=timeouts
                )
        except httpx.TimeoutException as exc:
            _ATS_CALLS(key.source, tenant, "error").inc()
            raise ApiError(f"{what}: timed out", transient=True) from exc
        except httpx.TransportError as exc:
            _ATS_CALLS(key.source, tenant, "error").inc()
            raise ApiError(f"{what}: {type(exc).__name__}", transient=True) from exc
        status = response.status_code
        _ATS_CALLS(key.source, tenant, "429" if status == 429 else f"{status // 100}xx").inc()
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

    def error_for(self, response: Answer, what: str) -> ApiError:
        """The error for a non-2xx response; clients that know their ATS's error body override."""
        return classify(response, what)

    async def get_document(
        self,
        url: str,
        *,
        what: str,
        route: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeouts: httpx.Timeout | None = None,
    ) -> Document:
        """GET a JSON document, stamped with when the request was sent."""
        response = await self.request(
            "GET", url, what=what, route=route, headers=headers, params=params, timeouts=timeouts
        )
        # elapsed runs from sending the request to reading the body; the budget wait is excluded.
        requested_at = time.time() - response.elapsed_s
        try:
            return Document(response.json(), requested_at)
        except ValueError as exc:
            raise ApiError(
                f"{what}: response is not JSON", status=response.status_code, transient=True
            ) from exc
