"""Statistics per tenant and source over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from app.admin import schemas as s
from app.admin.common import invalid, not_found
from app.platform.queue import DUPLICATES_TTL_S
from app.services import Services
from app.store import admin as sql
from app.store import query

log = structlog.get_logger(__name__)


async def stats(
    services: Services,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
    source: str | None = None,
) -> s.Stats:
    """Per tenant and source over ``[since, until)`` (default: the last 24 hours): records by
    state, duplicates (counted per hour in Redis, see
    :meth:`app.platform.queue.Queue.count_duplicate`), ack latency percentiles; and the backlog
    now."""
    until = until or datetime.now(UTC)
    # Bounded a day inside the calendar (schemas.TIME_MIN), so this cannot overflow.
    since = since or until - timedelta(days=1)
    if since >= until:
        raise invalid("since must be before until.")
    async with services.engine.connect() as conn:
        if tenant is not None and await sql.get_tenant(conn, tenant) is None:
            raise not_found(f"Tenant {tenant!r}")
        totals, states, backlog = await query.stats(
            conn, since=since, until=until, tenant=tenant, source=source
        )
    by_state: dict[tuple[str, str], dict[str, int]] = {}
    for row in states:
        by_state.setdefault((row.tenant, row.source), {})[row.state] = row.n
    work: dict[tuple[str, str, str], s.BacklogView] = {
        (row.tenant, row.source, row.work): s.BacklogView(
            pending=row.pending, oldest_age_s=row.oldest_age_s
        )
        for row in backlog
    }
    keys = sorted({(r.tenant, r.source) for r in totals} | {(t, src) for t, src, _ in work})
    totals_by = {(r.tenant, r.source): r for r in totals}
    tenant_ids = {(r.tenant, r.source): r.tenant_id for r in [*totals, *backlog]}
    hours = _hours(since, until)
    empty = s.BacklogView(pending=0, oldest_age_s=None)
    out: list[s.SourceStats] = []
    for key in keys:
        total = totals_by.get(key)
        records = int(total.records) if total else 0
        duplicates = await services.queue.duplicates(tenant_ids[key], key[1], hours)
        seen = records + (duplicates or 0)
        out.append(
            s.SourceStats(
                tenant=key[0],
                source=key[1],
                records=records,
                states=by_state.get(key, {}),
                duplicates=duplicates,
                duplicate_ratio=(
                    None if duplicates is None else round(duplicates / seen, 3) if seen else 0.0
                ),
                ack_p50_ms=_ms(total.ack_p50_ms if total else None),
                ack_p99_ms=_ms(total.ack_p99_ms if total else None),
                enrichment_backlog=work.get((*key, "outbox"), empty),
                delivery_backlog=work.get((*key, "delivery"), empty),
            )
        )
    return s.Stats(since=since, until=until, sources=out)


def _ms(value: float | None) -> float | None:
    """Milliseconds to one decimal: ack times are stored whole, so a percentile interpolated
    between them is no more precise than that."""
    return None if value is None else round(value, 1)


def _hours(since: datetime, until: datetime) -> list[int]:
    """The Unix hours ``[since, until)`` touches that the duplicate counters still keep."""
    now_hour = int(datetime.now(UTC).timestamp()) // 3600
    first = max(int(since.timestamp()) // 3600, now_hour - DUPLICATES_TTL_S // 3600)
    last = min(int((until.timestamp() - 1e-6) // 3600), now_hour)
    return list(range(first, last + 1))
