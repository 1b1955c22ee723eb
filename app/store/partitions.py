"""Monthly partitions of ``record``: named ``record_pYYYY_MM``, made ahead, dropped whole."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.models import RECORD_PARTITION

_LIST = text(
    """
    SELECT c.relname AS name FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'record'::regclass
    ORDER BY c.relname
    """
)
_NAME = re.compile(r"^record_p(\d{4})_(\d{2})$")


def month_start(moment: datetime, offset: int = 0) -> datetime:
    """The first instant (UTC) of the month ``offset`` months from ``moment``'s."""
    index = moment.year * 12 + moment.month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Partition:
    """One month of records: ``start`` included, ``end`` excluded."""

    name: str
    start: datetime
    end: datetime


def partition_for(moment: datetime) -> Partition:
    """The partition that holds records received at ``moment``."""
    start = month_start(moment.astimezone(UTC))
    return Partition(f"record_p{start:%Y_%m}", start, month_start(start, 1))


async def ensure(conn: AsyncConnection, now: datetime, *, ahead: int = 2) -> list[str]:
    """Make the partitions of this month and the ``ahead`` following ones; the names made."""
    existing = set(await names(conn))
    made = []
    for offset in range(ahead + 1):
        part = partition_for(month_start(now.astimezone(UTC), offset))
        if part.name in existing:
            continue
        # Names and bounds are built here from dates, never from input.
        await conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {part.name} PARTITION OF record "
                f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
            )
        )
        made.append(part.name)
    return made


async def names(conn: AsyncConnection) -> list[str]:
    """The partitions of ``record``, oldest first."""
    return list((await conn.execute(_LIST)).scalars())


async def existing(conn: AsyncConnection) -> list[Partition]:
    """The monthly partitions of ``record`` with their bounds, oldest first."""
    found = []
    for name in await names(conn):
        match = _NAME.match(name)
        if match is None:
            continue
        found.append(partition_for(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)))
    return found


async def drop(conn: AsyncConnection, name: str) -> None:
    """Drop one monthly partition, its records with it (their keys stay in ``record_key``)."""
    if not RECORD_PARTITION.match(name):
        raise ValueError(f"not a record partition: {name!r}")
    # Dropping a partition locks ``record`` for an instant; waiting long for that lock would
    # queue every insert behind it, so give up instead (the next run tries again).
    await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
    await conn.execute(text(f"DROP TABLE {name}"))
