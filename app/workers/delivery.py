"""Delivery of one normalized event per record to the tenant's destination, signed with
Standard Webhooks (``webhook-id`` = record id, so the vendor can drop a repeat).

At least once: a send whose success cannot be written down is sent again by a later run. A
database error anywhere in a run is an arq ``Retry``, never the end of the job, and marking a
delivery done is retried for a while first, so a short outage does not cause a repeat.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from arq import Retry

from app.clients.base import parse_retry_after
from app.clients.http import send_once
from app.platform.backoff import PLUS_MINUS_20, Backoff
from app.platform.db import DB_ERRORS
from app.platform.group_commit import GroupCommit
from app.platform.metrics import DEAD_LETTERS, DELIVERIES
from app.services import Services
from app.store import attempts, dead_letters, deliveries, work
from app.store.dead_letters import FailureKind
from app.verifiers import standard_webhooks as swh
from app.workers.context import process_singleton, process_slots

log = structlog.get_logger(__name__)

# After a successful send, failing to mark it done means sending it again: a restart or
# failover of PostgreSQL takes seconds, so keep trying that long (the budget keeps claim +
# send + this inside the job timeout) before leaving it to the job's retry.
MARK_DONE_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 4.0)
MARK_DONE_BUDGET_S = 10.0


_NO_DESTINATION: tuple[FailureKind, str, str] = (
    "configuration",
    "destination_missing",
    "the tenant has no enabled destination",
)


def signed_headers(record_id: str, body: bytes, secret: str, now: float) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (a fresh timestamp each time)."""
    return {**swh.signed_headers(record_id, body, secret, now), "user-agent": "Hirehook/0.1"}


def next_delay(schedule: Sequence[float], attempts: int, retry_after_s: float | None) -> float:
    """The wait after failed attempt ``attempts``: the schedule's step, +-20%, never below
    the destination's ``Retry-After``."""
    policy = Backoff.schedule(schedule, PLUS_MINUS_20)
    return policy.delay(attempts, retry_after_s=retry_after_s)


@dataclass(frozen=True, slots=True)
class _Sent:
    """How one attempt ended: the destination's status (None if unreachable) and, for a
    failure, what to record and how long the destination asked us to wait."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None
    # The tenant has no enabled destination: nothing was sent, and nothing will be.
    missing: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


_MISSING = _Sent(None, _NO_DESTINATION[2], missing=True)


@dataclass(frozen=True, slots=True)
class _Destination:
    # Parsed once per job: httpx parses a URL given as text again for every send.
    url: httpx.URL
    secret: str


@functools.cache
def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds)


def _destination(services: Services, row: Any) -> _Destination | None:
    """A tenant's destination row with its secret decrypted (once per job, not per send)."""
    if row is None:
        return None
    return _Destination(httpx.URL(row.url), str(services.cipher.decrypt_json(row.secret)["secret"]))


async def _send(
    services: Services, rid: uuid.UUID, body: bytes, destination: _Destination, tenant_id: int
) -> tuple[_Sent, dict[str, Any]]:
    """One attempt, and its line for the record's story (written down by the caller:
    :func:`_note_attempts`, or :class:`SentLedger` with its marking done)."""
    started = time.monotonic()
    answer: bytes | None = None
    try:
        response = await send_once(
            services.http,
            "POST",
            destination.url,
            content=body,
            headers=signed_headers(str(rid), body, destination.secret, time.time()),
            timeouts=_timeout(services.settings.delivery_timeout_s),
        )
    except httpx.HTTPError as exc:
        # The exception's text may quote the URL, and a URL may carry a token: name only.
        sent = _Sent(None, f"destination unreachable: {type(exc).__name__}")
    else:
        answer = response.content
        sent = (
            _Sent(response.status_code)
            if response.is_success
            else _Sent(
                response.status_code,
                f"destination answered {response.status_code}",
                parse_retry_after(response.headers.get("retry-after")),
            )
        )
    note = attempts.attempt(
        record_id=rid,
        tenant_id=tenant_id,
        latency_ms=round((time.monotonic() - started) * 1000),
        status=sent.status,
        error=sent.error,
        answer=answer,
    )
    return sent, note


async def _note_attempts(services: Services, notes: Sequence[dict[str, Any]]) -> None:
    """Write attempts down for the records' stories, in one exchange; the deliveries' fate
    never depends on it, so a database away here only costs the lines in the story."""
    try:
        async with services.autocommit.connect() as conn:
            await attempts.add_many(conn, notes)
    except DB_ERRORS as exc:
        log.warning(
            "delivery.attempt_not_noted",
            record_ids=[str(n["record_id"]) for n in notes],
            error=type(exc).__name__,
        )


async def _after_failure(
    services: Services, rid: uuid.UUID, attempts: int, sent: _Sent
) -> float | None:
    """Dead-letter a failed attempt that cannot succeed later, or defer it on the schedule;
    the delay before the next attempt, None once buried. Raises ``Retry`` if the database is
    away while burying."""
    error = sent.error or "delivery failed"
    status = sent.status
    if sent.missing:
        await _give_up(services, rid, attempts, None, *_NO_DESTINATION)
        return None
    if status == 410:
        # Standard Webhooks: 410 Gone means the endpoint is retired; retrying cannot help.
        await _give_up(services, rid, attempts, status, "configuration", "destination_gone", error)
        return None
    schedule = services.settings.delivery_retry_schedule_s
    if attempts > len(schedule):
        kind: FailureKind = "configuration" if status in (401, 403, 404) else "pipeline"
        reason = "destination_refused" if kind == "configuration" else "delivery_exhausted"
        await _give_up(services, rid, attempts, status, kind, reason, error)
        return None
    delay = next_delay(schedule, attempts, sent.retry_after_s)
    try:
        async with services.engine.begin() as conn:
            await work.defer(conn, "delivery", rid, delay_s=delay, error=error, status=status)
    except DB_ERRORS as exc:
        # The attempt is counted (by the claim); only its error is not recorded.
        log.warning("delivery.database_unavailable", record_id=str(rid), error=type(exc).__name__)
    DELIVERIES.labels("retrying").inc()
    log.info("delivery.retrying", record_id=str(rid), attempts=attempts, error=error, delay_s=delay)
    return delay


async def deliver_record(ctx: dict[str, Any], record_id: str) -> str:
    """POST one record's normalized event; retried on its own schedule, then dead-lettered."""
    services: Services = ctx["services"]
    settings = services.settings
    rid = uuid.UUID(record_id)
    try:
        async with services.engine.begin() as conn:
            claimed = await work.claim(conn, "delivery", rid, lease_s=settings.worker_lease_s)
            destination = _destination(
                services,
                await deliveries.destination(conn, claimed.tenant_id)
                if claimed is not None
                else None,
            )
    except DB_ERRORS as exc:
        # arq retries only Retry: without it a database blip would wait for the sweeper.
        log.warning("delivery.database_unavailable", record_id=record_id, error=type(exc).__name__)
        raise Retry(defer=settings.enrich_retry_base_s) from exc
    if claimed is None:
        return "already-done"
    structlog.contextvars.bind_contextvars(tenant_id=claimed.tenant_id)
    attempts: int = claimed.attempts
    if destination is None:
        sent = _MISSING
    else:
        async with process_slots(ctx, "delivery_slots"):
            sent, note = await _send(
                services, rid, bytes(claimed.body), destination, claimed.tenant_id
            )
            if sent.delivered and not await _sent_ledger(ctx).write_down(note):
                # Sent but not recorded: the next run sends it again, with the same webhook-id.
                raise Retry(defer=settings.enrich_retry_base_s)
        if not sent.delivered:
            await _note_attempts(services, [note])
    if sent.delivered:
        return "delivered"
    delay = await _after_failure(services, rid, attempts, sent)
    if delay is None:
        return "dead-letter"
    raise Retry(defer=delay)


async def deliver_records(ctx: dict[str, Any], record_ids: list[str]) -> str:
    """POST a batch of records' normalized events (deliveries a finishing transaction owed
    that its job did not send, or the sweeper's) with one claim for all of them, at least
    once like :func:`deliver_record`.

    The sends run concurrently within the process's delivery slots. A delivery that fails
    continues as a job of its own on the retry schedule, so one slow or refusing event never
    holds back or repeats the rest. A send starts only while there is time left in the job to
    finish it and write it down; the rest are handed back untried, as jobs of their own.
    """
    return await _deliver(ctx, [uuid.UUID(i) for i in record_ids], time.monotonic(), alone=True)


async def deliver_owed(ctx: dict[str, Any], owed: deliveries.Owed, started: float) -> None:
    """Send the deliveries a batch job's finishing transaction just owed (created claimed for
    this job, with their destinations), in that job (which started at ``started``,
    monotonic), as :func:`deliver_records` would in a job of its own.

    A job of its own cost a publish, arq's start, run and finish of the job, and a poll's
    wait: about a tenth of the worker's CPU per delivered event; claiming the rows and
    looking up their destination again, two more round trips per batch. What this job has no
    time left for is handed back as jobs of their own; the delivery rows, committed with the
    records' processing, stay the truth (the sweeper republishes what a crash leaves).
    """
    services: Services = ctx["services"]
    destinations = {
        tenant_id: _destination(services, row) for tenant_id, row in owed.destinations.items()
    }
    await _send_claimed(ctx, owed.deliveries, destinations, started, alone=False)


async def _deliver(
    ctx: dict[str, Any], record_ids: list[uuid.UUID], started: float, *, alone: bool
) -> str:
    """Claim and send ``record_ids``' deliveries for a job that started at ``started``.
    Raises ``Retry`` if the database is away at the claim."""
    services: Services = ctx["services"]
    settings = services.settings
    try:
        # The claim is one statement, its own transaction: BEGIN and COMMIT would add two
        # round trips and buy nothing.
        async with services.autocommit.connect() as conn:
            rows = await work.claim_many(
                conn,
                "delivery",
                record_ids,
                lease_s=settings.worker_lease_s,
                slack_s=settings.claim_slack_s,
            )
            destinations = {
                tenant_id: _destination(services, await deliveries.destination(conn, tenant_id))
                for tenant_id in sorted({row.tenant_id for row in rows})
            }
    except DB_ERRORS as exc:
        log.warning(
            "delivery.database_unavailable", records=len(record_ids), error=type(exc).__name__
        )
        raise Retry(defer=settings.enrich_retry_base_s) from exc
    written = await _send_claimed(ctx, rows, destinations, started, alone=alone)
    return f"delivered {written} of {len(record_ids)}"


async def _send_claimed(
    ctx: dict[str, Any],
    rows: Sequence[Any],
    destinations: dict[int, _Destination | None],
    started: float,
    *,
    alone: bool,
) -> int:
    """Send claimed deliveries (rows with ``id``, ``tenant_id``, ``body`` and ``attempts``)
    for a job that started at ``started``; how many were sent and written down. The first
    send of a job of its own (``alone``) starts whatever the time, so a delivery job always
    makes progress."""
    services: Services = ctx["services"]
    settings = services.settings
    # The last send may start this late and still be answered (delivery_timeout_s) and
    # written down (MARK_DONE_BUDGET_S) before the job's timeout cancels it.
    last_start = (
        started + settings.job_timeout_s - settings.delivery_timeout_s - MARK_DONE_BUDGET_S - 1
    )
    batch = _Batch(_sent_ledger(ctx))
    begun = not alone

    async def attempt(row: Any) -> _Sent | None:
        nonlocal begun
        destination = destinations[row.tenant_id]
        if destination is None:
            return _MISSING
        async with process_slots(ctx, "delivery_slots"):
            if batch.held or (begun and time.monotonic() > last_start):
                return None
            begun = True
            sent, note = await _send(services, row.id, bytes(row.body), destination, row.tenant_id)
            if sent.delivered:
                # Within the slot: the next send starts only once this one is written down
                # or the database is known to be away.
                await batch.write_down(row.id, note)
            else:
                await _note_attempts(services, [note])
        return sent

    results = await asyncio.gather(*(attempt(row) for row in rows))
    for rid in batch.unwritten:
        # Sent but not recorded: sent again, with the same webhook-id, by a job of its own
        # once the database is back.
        await services.queue.enqueue_delivery(rid, defer_s=settings.enrich_retry_base_s)
    untried = [row.id for row, sent in zip(rows, results, strict=True) if sent is None]
    if untried:
        await _hand_back(services, untried)
    for row, sent in zip(rows, results, strict=True):
        if sent is not None and not sent.delivered:
            await _retry_alone(services, row, sent)
    return len(batch.written)


class SentLedger:
    """The worker process's successful sends, written down together (app.platform.group_commit):
    a send joins the next statement (:func:`app.store.attempts.delivered`: its delivery done
    and its attempt noted), and a writer takes every send that finished while the previous
    statement was in flight, whichever job made it. Written down per job, a drained backlog's
    jobs of a dozen sends each wrote one or two sends per statement, two statements a wave.

    While a statement fails (the database away), ``stalled`` is set and no job starts a send,
    so what was sent and cannot be written down, and is therefore sent again later, is at most
    what was in flight. A statement that failed for its whole budget (``MARK_DONE_*``) answers
    False to each of its sends.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self.stalled = asyncio.Event()
        # One writer: while it waits on PostgreSQL the next sends gather for it, so the
        # statements per send fall as the rate rises; and a database that does not answer
        # holds one statement, not one per job.
        self._commit: GroupCommit[dict[str, Any], bool] = GroupCommit(
            self._write, writers=1, max_batch=_LEDGER_BATCH
        )

    async def write_down(self, note: dict[str, Any]) -> bool:
        """Record one successful send (its note from :func:`_send`); False if the database
        stayed away for the whole budget: the send is to be made again."""
        return await self._commit.submit(note, None)

    async def _write(self, notes: Sequence[dict[str, Any]]) -> list[bool]:
        # This writer runs in a copy of the context of whichever job's send started it: its
        # lines are about every job's sends, so they name each record's tenant themselves.
        structlog.contextvars.clear_contextvars()
        written = await _mark_done(self._services, notes, on_failure=self.stalled.set)
        # Cleared either way: after a statement that gave up, the next job tries again (each
        # job that saw a failure stops sending, see _Batch).
        self.stalled.clear()
        if written:
            DELIVERIES.labels("delivered").inc(len(notes))
            for note in notes:
                log.info(
                    "delivery.delivered",
                    record_id=str(note["record_id"]),
                    tenant_id=note["tenant_id"],
                    status=note["status"],
                )
        return [written] * len(notes)

    async def drain(self) -> None:
        """Wait for the statement in flight (on shutdown)."""
        await self._commit.drain()


# Sends per statement: far more than a worker has in flight (worker_concurrency), a bound
# only for a database that comes back to a long queue.
_LEDGER_BATCH = 500


def _sent_ledger(ctx: dict[str, Any]) -> SentLedger:
    services: Services = ctx["services"]
    return process_singleton(ctx, "sent_ledger", lambda: SentLedger(services))


class _Batch:
    """A batch job's successful sends as the process's :class:`SentLedger` wrote them down.
    Once one of them could not be written down (the database away for the ledger's whole
    budget), the job starts no more sends: the rest are handed back untried."""

    def __init__(self, ledger: SentLedger) -> None:
        self._ledger = ledger
        self._gave_up = False
        self.written: list[uuid.UUID] = []
        self.unwritten: list[uuid.UUID] = []

    @property
    def held(self) -> bool:
        """No new send may start: the database is not taking the ledger's writes."""
        return self._gave_up or self._ledger.stalled.is_set()

    async def write_down(self, rid: uuid.UUID, note: dict[str, Any]) -> None:
        if not self._gave_up and await self._ledger.write_down(note):
            self.written.append(rid)
            return
        self._gave_up = True
        self.unwritten.append(rid)


async def _retry_alone(services: Services, row: Any, sent: _Sent) -> None:
    """A batch's failed delivery: buried, or continued as a job of its own on the schedule."""
    try:
        delay = await _after_failure(services, row.id, row.attempts, sent)
    except Retry as retry:
        delay = (retry.defer_score or 0) / 1000
    if delay is not None:
        await services.queue.enqueue_delivery(row.id, defer_s=delay)


async def _hand_back(services: Services, record_ids: list[uuid.UUID]) -> None:
    """Give back claimed deliveries this run did not try, each as a job of its own, with
    their attempt refunded; if the database is away the attempt stays counted and the jobs
    come back after a pause (a job of its own claims its row whatever its lease)."""
    defer = 0.0
    try:
        async with services.engine.begin() as conn:
            await work.release_many(conn, "delivery", record_ids)
    except DB_ERRORS as exc:
        log.warning(
            "delivery.database_unavailable", records=len(record_ids), error=type(exc).__name__
        )
        defer = services.settings.enrich_retry_base_s
    for rid in record_ids:
        await services.queue.enqueue_delivery(rid, defer_s=defer)


async def _mark_done(
    services: Services,
    notes: Sequence[dict[str, Any]],
    *,
    on_failure: Callable[[], object] | None = None,
) -> bool:
    """Record successful sends (their notes from :func:`_send`) in one statement; False if the
    database stayed away (see MARK_DONE_*). ``on_failure`` is called at the first failed
    try."""
    give_up_at = time.monotonic() + MARK_DONE_BUDGET_S
    pauses = iter(MARK_DONE_PAUSES_S)
    while True:
        try:
            async with asyncio.timeout(max(0.0, give_up_at - time.monotonic())):
                async with services.autocommit.connect() as conn:
                    # Rows not updated were finished by an earlier try that committed after
                    # all (or by another run): done either way.
                    await attempts.delivered(conn, notes)
            return True
        except DB_ERRORS as exc:
            if on_failure is not None:
                on_failure()
            pause = next(pauses, None)
            retrying = pause is not None and time.monotonic() + pause < give_up_at
            log.warning(
                "delivery.mark_done_failed",
                records=len(notes),
                error=type(exc).__name__,
                retrying=retrying,
            )
            if pause is None or not retrying:
                return False
            await asyncio.sleep(pause)


async def _give_up(
    services: Services,
    rid: uuid.UUID,
    attempts: int,
    status: int | None,
    kind: FailureKind,
    reason: str,
    detail: str,
) -> None:
    try:
        async with services.engine.begin() as conn:
            if await work.give_up(conn, "delivery", rid, error=detail, status=status):
                await dead_letters.bury(
                    conn,
                    record_id=rid,
                    stage="delivery",
                    kind=kind,
                    reason=reason,
                    detail=detail,
                    attempts=attempts,
                )
    except DB_ERRORS as exc:
        # Not buried: the next run decides again (and, for a send, sends again).
        log.warning("delivery.database_unavailable", record_id=str(rid), error=type(exc).__name__)
        raise Retry(defer=services.settings.enrich_retry_base_s) from exc
    DELIVERIES.labels("dead_letter").inc()
    DEAD_LETTERS.labels("delivery", kind, reason).inc()
    log.warning("delivery.dead_letter", record_id=str(rid), kind=kind, reason=reason, detail=detail)
