"""The cursor of one polled resource, as stored in ``poll_cursor.position`` (JSONB).

A *sweep* lists every item updated after ``since``, page by page; ``since`` stays fixed for the
whole sweep, because the order of a list is not documented ([I] SmartRecruiters does not say
how ``GET /candidates`` is sorted), so no page can tell that earlier-dated items are not still
to come. ``page`` names the next page of the sweep in progress, so a poll that died resumes
there. When the last page is read, ``since`` moves to the newest date seen minus the overlap,
never later than the moment the sweep started minus the overlap: an item changed while the
sweep ran may have moved to a page already read, and the next sweep must see it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from app.platform.backoff import Backoff


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class Position:
    """Where one resource's polling stands."""

    # Items updated after this moment are listed by the current (or next) sweep.
    since: datetime
    # The next page of the sweep in progress: a page id, an offset, or None for the first.
    page: str | int | None = None
    # Pages of the sweep in progress already committed.
    pages: int = 0
    # When the sweep in progress started, and the newest date it has seen so far.
    sweep_started: datetime | None = None
    newest: datetime | None = None
    # When the last sweep finished.
    swept_at: datetime | None = None
    # How far the last sweep saw: its newest date, at most its start, without the overlap. An
    # item created after it is new ([C] "createdDateField" after the cursor means created);
    # None before the first sweep, when ``since`` is that boundary.
    seen_until: datetime | None = None
    # Consecutive failed polls, the last one's time and reason (no secret, no payload).
    failures: int = 0
    failed_at: datetime | None = None
    error: str | None = None

    @property
    def in_sweep(self) -> bool:
        """A sweep started and has pages left."""
        return self.pages > 0 or self.page is not None

    @classmethod
    def load(cls, raw: dict[str, Any] | None, *, default_since: datetime) -> Position:
        """The stored position, or a fresh one starting at ``default_since``."""
        if not raw or _time(raw.get("since")) is None:
            return cls(since=default_since)
        since = _time(raw["since"])
        assert since is not None
        page = raw.get("page")
        return cls(
            since=since,
            page=page if isinstance(page, str | int) and not isinstance(page, bool) else None,
            pages=int(raw.get("pages") or 0),
            sweep_started=_time(raw.get("sweep_started")),
            newest=_time(raw.get("newest")),
            swept_at=_time(raw.get("swept_at")),
            seen_until=_time(raw.get("seen_until")),
            failures=int(raw.get("failures") or 0),
            failed_at=_time(raw.get("failed_at")),
            error=raw.get("error") if isinstance(raw.get("error"), str) else None,
        )

    def dump(self) -> dict[str, Any]:
        """The JSON stored in ``poll_cursor.position``."""
        return {
            "since": _text(self.since),
            "page": self.page,
            "pages": self.pages,
            "sweep_started": _text(self.sweep_started),
            "newest": _text(self.newest),
            "swept_at": _text(self.swept_at),
            "seen_until": _text(self.seen_until),
            "failures": self.failures,
            "failed_at": _text(self.failed_at),
            "error": self.error,
        }

    def started(self, now: datetime) -> Position:
        """This position at the start of a sweep (a resumed sweep keeps its start)."""
        if self.in_sweep and self.sweep_started is not None:
            return self
        return replace(self, page=None, pages=0, sweep_started=now, newest=None)

    def restarted(self) -> Position:
        """The sweep in progress begun again from its first page (its page id went stale)."""
        return replace(self, page=None, pages=0)

    def after_page(self, next_page: str | int | None, newest: datetime | None) -> Position:
        """The position after a page that has a next one."""
        best = newest if self.newest is None or (newest and newest > self.newest) else self.newest
        return replace(
            self, page=next_page, pages=self.pages + 1, newest=best, failures=0, error=None
        )

    def after_sweep(self, newest: datetime | None, overlap: timedelta, now: datetime) -> Position:
        """The position after the sweep's last page: ``since`` moves forward (never back)."""
        seen = newest if self.newest is None or (newest and newest > self.newest) else self.newest
        since, seen_until = self.since, self.seen_until
        if seen is not None:
            started = self.sweep_started or now
            covered = min(seen, started)
            since = max(since, covered - overlap)
            seen_until = covered if seen_until is None else max(seen_until, covered)
        return Position(since=since, swept_at=now, seen_until=seen_until)

    @property
    def created_after(self) -> datetime:
        """An item created after this moment was not seen before: it is reported as created."""
        return self.since if self.seen_until is None else max(self.seen_until, self.since)

    def failed(self, reason: str, now: datetime) -> Position:
        """This position after a failed poll (the sweep resumes where it stood)."""
        return replace(self, failures=self.failures + 1, failed_at=now, error=reason[:500])

    def due(self, now: datetime, interval: timedelta, *, retry_cap: timedelta) -> bool:
        """Whether the cron should poll this resource now."""
        if self.failures:
            # Back off after failures (30 s, 1 min, 2 min, ... up to the interval), so an API
            # that refuses every call is not asked every tick.
            policy = Backoff(base_s=30.0, cap_s=retry_cap.total_seconds())
            wait = timedelta(seconds=policy.delay(self.failures))
            return self.failed_at is None or now >= self.failed_at + wait
        if self.in_sweep:
            return True
        return self.swept_at is None or now >= self.swept_at + interval
