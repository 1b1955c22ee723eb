"""Polling one connection: its lock, its resources' sweeps, one transaction per page.

For each page: list it (under the tenant's rate budget, on the resource's budget route, so
SmartRecruiters' one-at-a-time ``GET /candidates`` is shared with enrichment), turn every item
into an intake event, and commit the page's records, outbox rows and the advanced cursor in one
transaction; then publish the new records' jobs. A poll that dies between two pages resumes
from the last committed cursor, and a page read twice records nothing twice (dedupe key).
Design notes: docs/polling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from app.clients.base import ApiClient, ApiError, BudgetExhaustedError, BudgetKey
from app.clients.http import Answer
from app.intake.connections import ConnectionInfo
from app.intake.core import Outcome
from app.intake.payload import parse_json
from app.platform.backoff import Backoff
from app.platform.db import DB_ERRORS
from app.platform.errors import AppError
from app.poller.items import PolledItem, polled_item
from app.poller.position import Position
from app.schemas import polling
from app.services import Services
from app.store import connections as connection_sql
from app.store import cursors

log = structlog.get_logger(__name__)

# A page whose id the ATS no longer accepts (expired, or the data changed under it) is answered
# with one of these; the sweep then starts again from its first page.
_STALE_PAGE = frozenset({400, 404, 410})
# What a page's commit can fail with (AppError: the intake's "conflicting record vanished").
_COMMIT_ERRORS: tuple[type[BaseException], ...] = (*DB_ERRORS, AppError)


@dataclass(frozen=True, slots=True)
class Page:
    """One listed page."""

    items: list[Any]
    next: str | int | None
    total: int | None


@dataclass(frozen=True, slots=True)
class PageDone:
    """Reported after each committed page (the back-fill's progress bar)."""

    resource: str
    items: int
    recorded: int
    total: int | None


@dataclass(slots=True)
class ResourceReport:
    """What one run did with one resource."""

    name: str
    pages: int = 0
    items: int = 0
    recorded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    # A sweep reached its last page.
    swept: bool = False
    # Stopped with pages left (time or rate budget): poll again after ``retry_after_s``.
    more: bool = False
    retry_after_s: float | None = None
    error: str | None = None
    # Records the last page added (for progress reports).
    last_recorded: int = 0
    # The session holding the poll's lock died: the run stops writing.
    lock_lost: bool = False


@dataclass(slots=True)
class RunReport:
    """What one run of one connection did."""

    status: Literal["done", "busy", "more", "failed"]
    resources: list[ResourceReport] = field(default_factory=list)
    error: str | None = None

    @property
    def retry_after_s(self) -> float | None:
        """When to run again, for a run that stopped with pages left."""
        waits = [r.retry_after_s or 0.0 for r in self.resources if r.more]
        return max(waits) if waits else None


class LockLostError(Exception):
    """The session holding a poll's lock is gone; the poll must not write any more."""


# What can keep a page from being committed.
_PAGE_ERRORS: tuple[type[BaseException], ...] = (LockLostError, *_COMMIT_ERRORS)


class _OutOfTimeError(Exception):
    """Waiting for the API (Retry-After, budget) would pass the run's deadline."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"would wait {wait_s:.1f}s")
        self.wait_s = wait_s


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Poller:
    """Polls connections configured with ``options.polling``; any number of processes may run
    one, the per-connection lock keeps them from polling the same connection at once."""

    def __init__(
        self,
        services: Services,
        *,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._services = services
        self._max_attempts = max_attempts
        # A page's transient failures: 0.5 s, 1 s, 2 s, ... up to 30 s.
        self._backoff = Backoff(base_s=backoff_s, cap_s=30.0)
        self._now = clock

    def now(self) -> datetime:
        """The poller's clock (UTC)."""
        return self._now()

    @asynccontextmanager
    async def exclusive(self, connection_id: int) -> AsyncIterator[int | None]:
        """Hold the connection's poll lock for the block, if it is free; yields the backend
        pid of the session holding it, or None if another poll holds it.

        The lock lives on a database session of its own, in autocommit, for the whole poll.
        """
        async with self._services.autocommit.connect() as conn:
            holder = await cursors.try_lock(conn, connection_id)
            try:
                yield holder
            finally:
                if holder is not None:
                    await self._release(conn, connection_id)

    @staticmethod
    async def _release(conn: AsyncConnection, connection_id: int) -> None:
        try:
            await cursors.unlock(conn, connection_id)
        except BaseException as exc:
            # Closing the session releases its locks: the pool must not hand a session still
            # holding this one to someone else. A session already gone released it already.
            await conn.invalidate()
            if not isinstance(exc, DB_ERRORS):
                raise
            log.warning("poll.unlock_failed", error=type(exc).__name__)

    async def run(
        self,
        connection: ConnectionInfo,
        *,
        resources: Sequence[str] | None = None,
        since: datetime | None = None,
        only_due: bool = False,
        deadline_s: float | None = None,
        progress: Callable[[PageDone], None] | None = None,
    ) -> RunReport:
        """Poll ``connection`` (its ``resources``, default all) under its lock.

        ``since`` starts a fresh sweep from that moment (a back-fill; the cursor never moves
        forward for it); ``only_due`` polls only resources whose refresh interval has passed;
        after ``deadline_s`` seconds no further page is started.
        """
        log_ctx = {"connection_id": connection.id, "tenant": connection.tenant_slug}
        try:
            config = connection.parsed(polling.parse)
        except ValueError as exc:
            # Refused when the tenants file was loaded; a connection broken since is reported.
            log.warning("poll.invalid_configuration", detail=str(exc), **log_ctx)
            return RunReport("failed", error=str(exc))
        names = list(resources) if resources else list(config.resources)
        unknown = [n for n in names if n not in config.resources]
        if unknown:
            return RunReport("failed", error=f"not polled: {', '.join(unknown)}")
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        async with self.exclusive(connection.id) as holder:
            if holder is None:
                log.info("poll.busy", **log_ctx)
                return RunReport("busy")
            reports: list[ResourceReport] = []
            for name in names:
                if reports and reports[-1].lock_lost:
                    break
                reports.append(
                    await self._resource(
                        connection,
                        config,
                        name,
                        holder=holder,
                        since=since,
                        only_due=only_due,
                        deadline=deadline,
                        progress=progress,
                    )
                )
        status: Literal["done", "more", "failed"] = "done"
        if any(r.more for r in reports):
            status = "more"
        elif any(r.error for r in reports):
            status = "failed"
        return RunReport(status, reports)

    async def _resource(
        self,
        connection: ConnectionInfo,
        config: polling.PollingConfig,
        name: str,
        *,
        holder: int,
        since: datetime | None,
        only_due: bool,
        deadline: float | None,
        progress: Callable[[PageDone], None] | None,
    ) -> ResourceReport:
        resource = config.resources[name]
        report = ResourceReport(name)
        log_ctx = {
            "connection_id": connection.id,
            "tenant": connection.tenant_slug,
            "resource": name,
        }
        now = self._now()
        async with self._services.engine.connect() as conn:
            raw = await cursors.get(conn, connection.id, name)
        position = stored_position(raw, config, now)
        if since is not None:
            # A back-fill sweeps from the earlier of its date and the cursor: what the cursor
            # still owed is never skipped.
            position = Position(since=since if raw is None else min(since, position.since))
        elif only_due and not is_due(position, config, now):
            return report
        position = position.started(now)
        client = ApiClient(
            self._services.http,
            self._services.budget,
            BudgetKey(connection.tenant_id, connection.source),
        )
        restarted = False
        while True:
            if deadline is not None and report.pages and time.monotonic() >= deadline:
                report.more = True
                return report
            try:
                page = await self._fetch(client, config, name, position, deadline)
            except _OutOfTimeError as stop:
                report.more, report.retry_after_s = True, stop.wait_s
                log.info("poll.paused", wait_s=round(stop.wait_s, 3), **log_ctx)
                return report
            except ApiError as exc:
                if (
                    not restarted
                    and exc.status in _STALE_PAGE
                    and position.page is not None
                    and resource.pagination.type == "page_id"
                ):
                    log.info("poll.page_stale", status=exc.status, **log_ctx)
                    position, restarted = position.restarted(), True
                    continue
                return await self._failed(connection, name, position, str(exc), report)
            try:
                position = await self._take(
                    connection, name, resource, position, page, report, holder
                )
            except _PAGE_ERRORS as exc:
                # Nothing of this page was committed; the next run reads it again. A lost lock
                # means the session holding it died, and another poll may be running now.
                report.lock_lost = isinstance(exc, LockLostError)
                report.error = (
                    "lost the poll lock" if report.lock_lost else f"database: {type(exc).__name__}"
                )
                log.warning("poll.page_not_committed", reason=report.error, **log_ctx)
                return report
            if progress is not None:
                progress(PageDone(name, len(page.items), report.last_recorded, page.total))
            if page.next is None:
                report.swept = True
                return report

    async def _take(
        self,
        connection: ConnectionInfo,
        name: str,
        resource: polling.ResourceConfig,
        position: Position,
        page: Page,
        report: ResourceReport,
        holder: int,
    ) -> Position:
        """Record one page with its cursor, publish its jobs; the position after it."""
        items = [
            polled_item(connection, name, resource, item, position.created_after)
            for item in page.items
        ]
        dates = [i.newest for i in items if i.newest is not None]
        newest = max(dates) if dates else None
        if page.next is None:
            overlap = timedelta(seconds=resource.overlap_s)
            after = position.after_sweep(newest, overlap, self._now())
        else:
            after = position.after_page(page.next, newest)
        outcomes = await self._commit(connection.id, name, items, after, holder)
        recorded = await self._publish(items, outcomes)
        report.pages += 1
        report.items += len(items)
        report.recorded += recorded
        report.last_recorded = recorded
        report.duplicates += sum(1 for o in outcomes if o.duplicate)
        report.quarantined += sum(
            1 for i, o in zip(items, outcomes, strict=True) if i.event.problems and not o.duplicate
        )
        log.info(
            "poll.page",
            connection_id=connection.id,
            tenant=connection.tenant_slug,
            resource=name,
            page=report.pages,
            items=len(items),
            recorded=recorded,
            last=page.next is None,
        )
        return after

    async def _fetch(
        self,
        client: ApiClient,
        config: polling.PollingConfig,
        name: str,
        position: Position,
        deadline: float | None,
    ) -> Page:
        """One page, waiting out 429s, 5xx and the rate budget (never past ``deadline``)."""
        resource = config.resources[name]
        pages = resource.pagination
        params: dict[str, str] = {}
        if pages.type != "none":
            params[pages.limit_param] = str(pages.limit)
        if pages.type == "page_id" and position.page is not None:
            params[pages.page_param] = str(position.page)
        elif pages.type == "offset":
            params[pages.offset_param] = str(position.page or 0)
        # The template's own query (updatedAfter=...) is kept; paging parameters are added.
        url = httpx.URL(
            config.base_url
            + polling.render_template(resource.url, position.since, resource.url_zone())
        ).copy_merge_params(params)
        what = f"{client.budget_key.source} {name} list"
        attempt = 0
        while True:
            try:
                response = await client.request(
                    "GET",
                    str(url),
                    what=what,
                    route=resource.budget_route(),
                    headers=config.headers(),
                )
                return self._page(response, resource, position, what)
            except BudgetExhaustedError as exc:
                # The budget (a 429's penalty included) is closed for longer than one wait:
                # not a failure, the page is simply asked for later.
                wait = exc.retry_after_s or 1.0
            except ApiError as exc:
                attempt += 1
                if not exc.transient or attempt >= self._max_attempts:
                    raise
                wait = self._backoff.delay(attempt, retry_after_s=exc.retry_after_s)
                log.info("poll.retrying", status=exc.status, wait_s=round(wait, 3), attempt=attempt)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise _OutOfTimeError(wait)
            await asyncio.sleep(wait)

    @staticmethod
    def _page(
        response: Answer, resource: polling.ResourceConfig, position: Position, what: str
    ) -> Page:
        try:
            body = parse_json(response.content)
        except AppError as exc:
            raise ApiError(f"{what}: the response is not JSON", status=200, transient=True) from exc
        pages = resource.pagination
        total = None
        if isinstance(body, list):
            items: Any = body
        elif isinstance(body, dict):
            items = body.get(pages.items_field)
            found = body.get(pages.total_field)
            total = found if isinstance(found, int) and not isinstance(found, bool) else None
        else:
            items = None
        if not isinstance(items, list):
            # Retrying will not change the shape: stop, and say which field was expected.
            raise ApiError(
                f"{what}: the response has no list in {pages.items_field!r}",
                status=200,
                transient=False,
                config_problem=True,
            )
        next_page: str | int | None = None
        if items and pages.type == "page_id" and isinstance(body, dict):
            token = body.get(pages.next_field)
            if not (isinstance(token, str | int) and not isinstance(token, bool) and token != ""):
                # [C] SmartRecruiters gives the next page in nextPageId or a Link rel="next".
                # httpx's Link parser, on the answer's headers (a page's, not every call's).
                links = httpx.Response(response.status_code, headers=response.headers).links
                link = links.get("next", {}).get("url")
                values = parse_qs(urlsplit(link).query).get(pages.page_param) if link else None
                token = values[0] if values else None
            # The same page id again would loop forever: treat it as the last page.
            next_page = token if token is not None and token != position.page else None
        elif items and pages.type == "offset":
            offset = int(position.page or 0) + len(items)
            more = len(items) >= pages.limit if total is None else offset < total
            next_page = offset if more else None
        return Page(items, next_page, total)

    async def _commit(
        self,
        connection_id: int,
        name: str,
        items: list[PolledItem],
        after: Position,
        holder: int,
    ) -> list[Outcome]:
        """The page's records and the advanced cursor, in one transaction, committed only
        while this poll still holds the connection's lock."""
        intake = self._services.intake
        timeout = self._services.settings.db_statement_timeout_s * 4
        async with asyncio.timeout(timeout), self._services.engine.begin() as conn:
            if not await cursors.lock_held(conn, connection_id, holder):
                raise LockLostError(connection_id)
            outcomes = await intake.record_many([i.event for i in items], conn=conn)
            await cursors.advance(conn, connection_id, name, after.dump())
        return outcomes

    async def _publish(self, items: list[PolledItem], outcomes: list[Outcome]) -> int:
        """After commit: the new records' jobs (the sweeper covers a failure here)."""
        await self._services.intake.publish_many([i.event for i in items], outcomes)
        return sum(1 for outcome in outcomes if not outcome.duplicate)

    async def _failed(
        self,
        connection: ConnectionInfo,
        name: str,
        position: Position,
        reason: str,
        report: ResourceReport,
    ) -> ResourceReport:
        """Keep the cursor where it stood, count the failure (the cron backs off on it)."""
        report.error = reason
        log.warning(
            "poll.failed",
            connection_id=connection.id,
            tenant=connection.tenant_slug,
            resource=name,
            reason=reason,
        )
        with contextlib.suppress(*DB_ERRORS):
            async with self._services.engine.begin() as conn:
                await cursors.advance(
                    conn, connection.id, name, position.failed(reason, self._now()).dump()
                )
        return report


def stored_position(
    raw: dict[str, Any] | None, config: polling.PollingConfig, now: datetime
) -> Position:
    """A resource's stored position, or a fresh one reaching back the connection's lookback."""
    return Position.load(raw, default_since=now - config.options.initial_lookback)


def is_due(position: Position, config: polling.PollingConfig, now: datetime) -> bool:
    """Whether the poll cron polls a resource standing at ``position`` now: its refresh
    interval passed, a sweep unfinished, or a failure's backoff (capped at the interval) over."""
    interval = config.options.refresh_interval
    return position.due(now, interval, retry_cap=interval)


async def polled_connections(
    services: Services, connection_id: int | None = None
) -> list[ConnectionInfo]:
    """Every enabled connection configured for polling (or just ``connection_id``)."""
    async with services.engine.connect() as conn:
        rows = await connection_sql.polled(conn, connection_id)
    return [services.connections.info(row) for row in rows]


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC ([C] polling runs in UTC by default)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


__all__ = [
    "PageDone",
    "Poller",
    "ResourceReport",
    "RunReport",
    "is_due",
    "polled_connections",
    "stored_position",
    "utc",
]
