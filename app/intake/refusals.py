"""Refused requests (401, 413, 429) counted for operators: who was refused, why, from where.

A flood of refusals must not become a flood of writes, so nothing is written per request:
refusals are counted in memory per (minute, tenant, source, status, reason, address) and
written every :data:`FLUSH_EVERY_S` seconds in one upsert that adds to the stored counts.
Each process admits at most :data:`KEYS_PER_MINUTE` distinct keys a minute; refusals past
that are counted under the address ``*`` (their tenant and source kept), so the count stays
right and the rows a minute bounded however many addresses a flood comes from. No body and
no credential is ever kept: the reason is the refusal's error code. Counts of the last few
seconds are lost if the process dies (written on an orderly shutdown). Kept
:data:`KEEP_DAYS` days (the maintenance job deletes older minutes).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.db import DB_ERRORS
from app.store import refusals as sql

log = structlog.get_logger(__name__)

KEEP_DAYS = 7
FLUSH_EVERY_S = 5.0
KEYS_PER_MINUTE = 500
# The statuses counted: a wrong credential, a body too large, a client blocked or too fast.
COUNTED = frozenset({401, 413, 429})
OVER_CAP = "*"

_Key = tuple[datetime, str, str, int, str, str]


class RefusalLog:
    """One process's refusals not yet written, and when they will be."""

    def __init__(
        self, *, flush_every_s: float = FLUSH_EVERY_S, keys_per_minute: int = KEYS_PER_MINUTE
    ) -> None:
        self._flush_every_s = flush_every_s
        self._keys_per_minute = keys_per_minute
        self._counts: dict[_Key, list[Any]] = {}
        # The distinct keys admitted in the current minute (written or not).
        self._minute: datetime | None = None
        self._admitted: set[_Key] = set()
        self._last_flush = time.monotonic()
        self._flushing: asyncio.Task[None] | None = None

    def note(
        self,
        engine: AsyncEngine,
        *,
        tenant: str | None,
        source: str,
        status: int,
        reason: str,
        address: str,
        now: datetime | None = None,
    ) -> None:
        """Count one refusal; start a write in the background when one is due."""
        if status not in COUNTED:
            return
        now = now or datetime.now(UTC)
        minute = now.replace(second=0, microsecond=0)
        if minute != self._minute:
            self._minute, self._admitted = minute, set()
        key: _Key = (minute, tenant or "", source, status, reason, address)
        if key not in self._admitted:
            if len(self._admitted) < self._keys_per_minute:
                self._admitted.add(key)
            else:
                key = (minute, tenant or "", source, status, reason, OVER_CAP)
        counted = self._counts.setdefault(key, [0, now])
        counted[0] += 1
        counted[1] = max(counted[1], now)
        due = time.monotonic() - self._last_flush >= self._flush_every_s
        if due and (self._flushing is None or self._flushing.done()):
            self._last_flush = time.monotonic()
            self._flushing = asyncio.get_running_loop().create_task(self.flush(engine))

    @property
    def pending(self) -> int:
        """Keys counted and not yet written."""
        return len(self._counts)

    async def flush(self, engine: AsyncEngine) -> None:
        """Write what was counted, in one statement; on a database error it is dropped (with a
        warning): refusals are for reading, never worth holding memory or a request for."""
        counts, self._counts = self._counts, {}
        self._last_flush = time.monotonic()
        if not counts:
            return
        rows = [
            sql.Counted(minute, tenant, source, status, reason, address, n, last)
            for (minute, tenant, source, status, reason, address), (n, last) in sorted(
                counts.items(), key=lambda item: item[0]
            )
        ]
        try:
            async with engine.begin() as conn:
                await sql.add(conn, rows)
        except DB_ERRORS as exc:
            log.warning(
                "refusals.not_written",
                keys=len(rows),
                refusals=sum(r.count for r in rows),
                error=type(exc).__name__,
            )

    async def close(self, engine: AsyncEngine) -> None:
        """Wait for a write under way, then write the rest."""
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush(engine)
