"""Claim, defer, give up and sweep: one set of statements for both work tables, and the
outbox's finish, which owes the deliveries (a delivery's finish is
:func:`app.store.attempts.delivered`, with its attempt).

``outbox`` holds a record's enrichment, ``delivery`` its delivery to the tenant's destination.
Both are keyed by record id, carry ``attempts``/``available_at``/``done_at``/``last_error``, and
are worked the same way: a claim pushes ``available_at`` past the job's lease (so the sweeper
leaves a running job alone), and ``done_at IS NULL`` in every update makes a second run of the
same job a no-op.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.deliveries import Claimed, Owed
from app.store.driver import fetch_any

Table = Literal["outbox", "delivery"]
TABLES: tuple[Table, ...] = ("outbox", "delivery")

# What a record job needs of its record, loaded by the claim itself: one round trip per claim.
# A delivery needs none of it (its row holds the body, the tenant and the attempts), and
# decoding the record's JSON columns for every delivery cost more than the claim itself.
_RECORD_COLUMNS = (
    "r.id, r.tenant_id, r.connection_id, r.source, r.event_type, r.known, r.subjects, "
    "r.payload, COALESCE(r.headers, '{}'::jsonb) AS headers, r.received_at"
)


def _statements(table: Table) -> dict[str, TextClause]:
    # ``last_status`` exists on delivery only (the destination's HTTP status).
    status = ", last_status = :status" if table == "delivery" else ""
    joined = (
        f"claimed.*, {_RECORD_COLUMNS} FROM claimed JOIN record r ON r.id = claimed.record_id"
        if table == "outbox"
        else "claimed.*, claimed.record_id AS id FROM claimed"
    )
    order = "r.id" if table == "outbox" else "claimed.record_id"
    return {
        "claim": text(
            f"""
            WITH claimed AS (
                UPDATE {table} SET attempts = attempts + 1,
                                   available_at = now() + make_interval(secs => :lease)
                WHERE record_id = :id AND done_at IS NULL
                RETURNING *
            )
            SELECT {joined}
            """  # noqa: S608 - the table name is one of two constants
        ),
        "claim_many": text(
            f"""
            WITH claimed AS (
                UPDATE {table} SET attempts = attempts + 1,
                                   available_at = now() + make_interval(secs => :lease)
                WHERE record_id = ANY(:ids) AND done_at IS NULL
                  AND available_at <= now() + make_interval(secs => :slack)
                RETURNING *
            )
            SELECT {joined}
            ORDER BY {order}
            """  # noqa: S608
        ),
        # A claimed row handed back untried: due again now, its attempt given back.
        "release_many": text(
            f"UPDATE {table} SET available_at = now(), attempts = attempts - 1 "  # noqa: S608
            "WHERE record_id = ANY(:ids) AND done_at IS NULL"
        ),
        # ``refund`` gives back the attempt of a run that only waited for the rate budget.
        "defer": text(
            f"""
            UPDATE {table} SET available_at = now() + make_interval(secs => :delay),
                               last_error = :error, attempts = attempts - :refund{status}
            WHERE record_id = :id AND done_at IS NULL
            """  # noqa: S608
        ),
        "give_up": text(
            f"UPDATE {table} SET done_at = now(), last_error = :error{status} "  # noqa: S608
            "WHERE record_id = :id AND done_at IS NULL"
        ),
        "reopen": text(
            f"UPDATE {table} SET done_at = NULL, attempts = 0, available_at = now(), "  # noqa: S608
            f"last_error = NULL{status.replace(':status', 'NULL')} WHERE record_id = ANY(:ids)"
        ),
        # Rows not done and past their grace (counted from the oldest job still queued, if
        # older than now), held; SKIP LOCKED lets every worker sweep.
        "sweep": text(
            f"""
            UPDATE {table} SET available_at = now() + make_interval(secs => :hold)
            WHERE record_id IN (
                SELECT record_id FROM {table}
                WHERE done_at IS NULL
                  AND available_at <= LEAST(now(), COALESCE(
                        to_timestamp(CAST(:oldest AS double precision)), now()))
                      - make_interval(secs => :grace)
                ORDER BY available_at
                LIMIT :batch
                FOR UPDATE SKIP LOCKED
            )
            RETURNING record_id
            """  # noqa: S608
        ),
        "backlog": text(
            f"""
            SELECT count(*) AS pending, count(*) FILTER (WHERE available_at <= now()) AS due,
                   min(created_at) AS oldest
            FROM {table} WHERE done_at IS NULL
            """  # noqa: S608
        ),
    }


_SQL: dict[Table, dict[str, TextClause]] = {table: _statements(table) for table in TABLES}


def _with_status(table: Table, status: int | None, **params: Any) -> dict[str, Any]:
    """``params``, plus the destination's ``status`` for the statements of ``delivery``."""
    return {**params, "status": status} if table == "delivery" else params


async def claim(
    conn: AsyncConnection, table: Table, record_id: uuid.UUID, *, lease_s: float
) -> Row[Any] | None:
    """Take the row for one run (``attempts`` + 1), with its record's columns for an outbox row
    (``id`` is the record id either way); None if done."""
    return (await conn.execute(_SQL[table]["claim"], {"id": record_id, "lease": lease_s})).first()


async def claim_many(
    conn: AsyncConnection,
    table: Table,
    record_ids: list[uuid.UUID],
    *,
    lease_s: float,
    slack_s: float,
) -> list[Row[Any]]:
    """:func:`claim` for many rows in one statement, for a batch job; the rows already done
    are left out, and so are the rows another run holds: those not due within ``slack_s``.

    A backlog older than the sweeper's grace is published twice, once by the API and once by
    the sweeper, as batch jobs of different ids; without this every batch would be worked by
    both, doubling the work exactly when the workers are behind. ``slack_s`` covers the hold
    the sweeper puts on rows it republishes (and clocks a little apart), so its own jobs can
    claim them. A run's retry of its own row (:func:`claim`) is not held back.
    """
    # Once per batch job, on the autocommit engine: past SQLAlchemy's execution.
    return await fetch_any(
        conn, _SQL[table]["claim_many"], {"ids": record_ids, "lease": lease_s, "slack": slack_s}
    )


# Records' enrichment done, the records processed and the deliveries they owe created, in one
# statement: only for the rows this run won (``done_at IS NULL``). The deliveries are created
# claimed, as claim_many would claim them (one attempt, leased), with each tenant's enabled
# destination returned: the job that owes them sends them next, and a claim and a look-up
# would be two more round trips per batch (``destination.tenant_id`` is unique).
_FINISH_PROCESSED = text(
    """
    WITH won AS (
        UPDATE outbox SET done_at = now(), last_error = NULL
        WHERE record_id = ANY(:ids) AND done_at IS NULL
        RETURNING record_id
    ),
    marked AS (
        UPDATE record SET state = 'processed', processed_at = now()
        WHERE id IN (SELECT record_id FROM won)
    ),
    made AS (
        INSERT INTO delivery (record_id, tenant_id, event_type, body, attempts, available_at)
        SELECT d.record_id, d.tenant_id, d.event_type, d.body, 1,
               now() + make_interval(secs => :lease)
        FROM unnest(CAST(:owed_ids AS uuid[]), CAST(:tenant_ids AS bigint[]),
                    CAST(:event_types AS text[]), CAST(:bodies AS bytea[]))
             AS d(record_id, tenant_id, event_type, body)
        WHERE d.record_id IN (SELECT record_id FROM won)
          AND EXISTS (SELECT 1 FROM destination WHERE tenant_id = d.tenant_id AND enabled)
        ORDER BY d.record_id
        ON CONFLICT (record_id) DO NOTHING
        RETURNING record_id, tenant_id, attempts
    )
    SELECT won.record_id, made.tenant_id, made.attempts, t.url, t.secret
    FROM won
    LEFT JOIN made ON made.record_id = won.record_id
    LEFT JOIN destination t ON t.tenant_id = made.tenant_id
    ORDER BY won.record_id
    """
)


async def finish_processed(
    conn: AsyncConnection,
    record_ids: list[uuid.UUID],
    owed: list[tuple[uuid.UUID, int, str, bytes]],
    *,
    lease_s: float,
) -> tuple[set[uuid.UUID], Owed]:
    """Mark records' enrichment done (``outbox``) and the records processed, and owe each
    (record id, tenant id, event type, body) of ``owed`` to its tenant's destination if it has
    an enabled one, claimed for ``lease_s`` by the caller's job: one statement. The ids this
    call finished (not those another run finished first: nothing is owed for them), and the
    deliveries owed. A crash before the sends leaves them to the sweeper once the lease is
    over, as for any claim."""
    params = {
        "ids": record_ids,
        "owed_ids": [o[0] for o in owed],
        "tenant_ids": [o[1] for o in owed],
        "event_types": [o[2] for o in owed],
        "bodies": [o[3] for o in owed],
        "lease": lease_s,
    }
    bodies = {o[0]: o[3] for o in owed}
    won: set[uuid.UUID] = set()
    claimed: list[Claimed] = []
    destinations: dict[int, Any] = {}
    # Once per finishing transaction (or alone on an autocommit connection): past SQLAlchemy.
    for row in await fetch_any(conn, _FINISH_PROCESSED, params):
        won.add(row.record_id)
        if row.tenant_id is not None:
            claimed.append(
                Claimed(row.record_id, row.tenant_id, bodies[row.record_id], row.attempts)
            )
            destinations.setdefault(row.tenant_id, row)
    return won, Owed(claimed, destinations)


async def release_many(conn: AsyncConnection, table: Table, record_ids: list[uuid.UUID]) -> None:
    """Hand back rows claimed but not tried: due now, with the claim's attempt given back."""
    await conn.execute(_SQL[table]["release_many"], {"ids": record_ids})


async def defer(
    conn: AsyncConnection,
    table: Table,
    record_id: uuid.UUID,
    *,
    delay_s: float,
    error: str | None,
    refund: bool = False,
    status: int | None = None,
) -> None:
    """Not before ``delay_s`` from now; the sweeper leaves it alone until then."""
    params = _with_status(
        table, status, id=record_id, delay=delay_s, error=error, refund=int(refund)
    )
    await conn.execute(_SQL[table]["defer"], params)


async def give_up(
    conn: AsyncConnection,
    table: Table,
    record_id: uuid.UUID,
    *,
    error: str,
    status: int | None = None,
) -> bool:
    """Mark done with the error that ended it; False if it was already done."""
    params = _with_status(table, status, id=record_id, error=error)
    result = await conn.execute(_SQL[table]["give_up"], params)
    return bool(result.rowcount)


async def reopen(conn: AsyncConnection, table: Table, record_ids: list[uuid.UUID]) -> None:
    """Start over with fresh attempts (a dead letter retried after its cause was fixed)."""
    await conn.execute(_SQL[table]["reopen"], {"ids": record_ids})


async def sweep(
    conn: AsyncConnection,
    table: Table,
    *,
    grace_s: float,
    batch: int,
    hold_s: float,
    oldest_queued_s: float | None = None,
) -> list[uuid.UUID]:
    """Up to ``batch`` rows not done past their grace, held for ``hold_s`` while republished.

    With ``oldest_queued_s`` (the epoch time of the oldest job still in the queue), the grace
    counts from then when that is earlier than now: a row due after the oldest queued job may
    simply be waiting its turn behind it, and republishing a backlog the workers have not
    reached yet would only add to it. A row due before it has no job left in the queue.
    """
    params = {"grace": grace_s, "batch": batch, "hold": hold_s, "oldest": oldest_queued_s}
    rows = await conn.execute(_SQL[table]["sweep"], params)
    return list(rows.scalars().all())


async def backlog(conn: AsyncConnection, table: Table) -> Row[Any]:
    """``pending`` rows, how many of them are ``due`` (not running, not waiting for a retry) and
    the ``oldest`` one's creation time."""
    return (await conn.execute(_SQL[table]["backlog"])).one()
