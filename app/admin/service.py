"""Operator actions on tenants, connections, records, replays, dead letters and statistics.

Every function takes the process's :class:`~app.services.Services` and keyword arguments, owns
its transaction, and raises :class:`~app.errors.AppError` (404, 400, 409) for what the operator
must correct; the admin API renders those, the CLI prints them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from app import privacy
from app.admin import schemas as s
from app.crypto import derive_keys
from app.errors import AppError
from app.poller.items import with_polled
from app.queue import DUPLICATES_TTL_S
from app.schemas.parsed import Reparse
from app.services import Services
from app.sources import REGISTRY
from app.store import admin as sql
from app.store import attempts as attempts_sql
from app.store import dead_letters as dead_sql
from app.store import query, story
from app.store import refusals as refusals_sql
from app.store import tenants as tenant_sql
from app.tenants import ConnectionSpec, DestinationSpec, check_connection
from app.validation import describe
from app.verifiers.standard_webhooks import decode_secret, require_strong
from app.workers import dead_letters

log = structlog.get_logger(__name__)

# One transaction reopens at most this many records, so a large replay holds no long locks.
REPLAY_BATCH = 500
# A filtered replay covers at most this many records per call (narrow the filter for more).
REPLAY_MAX = 100_000
# A filtered replay matching more records than this runs only with ``confirm`` (the count a
# dry run gave): a filter that narrows nothing must not reopen everything by accident.
REPLAY_CONFIRM_ABOVE = 1_000
PAGE_MAX = 500


def not_found(what: str) -> AppError:
    """The 404 of an unknown tenant, connection, record or key."""
    return AppError(404, f"{what} does not exist.", code="not_found")


def invalid(message: str) -> AppError:
    """The 400 of a request the operator must correct."""
    return AppError(400, message, code="invalid")


# --- tenants ----------------------------------------------------------------------------------


async def list_tenants(services: Services) -> list[s.TenantView]:
    """Every tenant."""
    async with services.engine.connect() as conn:
        rows = await sql.list_tenants(conn)
    return [s.TenantView.model_validate(row, from_attributes=True) for row in rows]


async def show_tenant(services: Services, *, slug: str) -> s.TenantDetail:
    """A tenant with its connections and destination."""
    async with services.engine.connect() as conn:
        tenant = await sql.get_tenant(conn, slug)
        if tenant is None:
            raise not_found(f"Tenant {slug!r}")
        connections = await sql.list_connections(conn, tenant=slug)
        destination = await sql.destination(conn, tenant.id)
    views = [_connection_view(services, row) for row in connections]
    return s.TenantDetail(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        connections=len(views),
        enabled_connections=sum(1 for v in views if v.enabled),
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
        connection_list=views,
        destination=(
            None
            if destination is None
            else s.DestinationView(
                url=destination.url, enabled=destination.enabled, secret_set=True
            )
        ),
    )


async def create_tenant(services: Services, *, spec: s.TenantCreate) -> s.TenantDetail:
    """A new tenant (no connections yet)."""
    try:
        async with services.engine.begin() as conn:
            await sql.create_tenant(conn, slug=spec.slug, name=spec.name)
    except IntegrityError as exc:
        raise AppError(409, f"Tenant {spec.slug!r} exists.", code="conflict") from exc
    log.info("admin.tenant_created", tenant=spec.slug)
    return await show_tenant(services, slug=spec.slug)


async def update_tenant(services: Services, *, slug: str, spec: s.TenantUpdate) -> s.TenantDetail:
    """Rename a tenant."""
    async with services.engine.begin() as conn:
        if await sql.rename_tenant(conn, slug, spec.name) is None:
            raise not_found(f"Tenant {slug!r}")
    return await show_tenant(services, slug=slug)


async def set_tenant_enabled(services: Services, *, slug: str, enabled: bool) -> s.TenantDetail:
    """Enable or disable all of a tenant's connections: disabled, its senders get 401s."""
    async with services.engine.begin() as conn:
        tenant = await sql.get_tenant(conn, slug)
        if tenant is None:
            raise not_found(f"Tenant {slug!r}")
        changed = await sql.set_tenant_enabled(conn, tenant.id, enabled)
    services.connections.invalidate()
    log.info("admin.tenant_enabled", tenant=slug, enabled=enabled, connections=changed)
    return await show_tenant(services, slug=slug)


async def set_destination(
    services: Services, *, slug: str, spec: s.DestinationSet
) -> s.TenantDetail:
    """Create or replace the tenant's destination, checked as the tenants file checks it (a URL
    the outbound policy accepts, a strong ``whsec_`` secret); the secret is never shown
    again."""
    try:
        checked = DestinationSpec(url=spec.url, secret=spec.secret, enabled=spec.enabled)
    except ValidationError as exc:
        # Locations and the outbound policy's reasons only: never the secret.
        raise invalid(f"destination: {describe(exc)}.") from None
    try:
        decode_secret(checked.secret)
        require_strong(checked.secret, what="secret")
    except ValueError as exc:
        # These messages never quote the secret.
        raise invalid(f"secret: {exc}") from None
    async with services.engine.begin() as conn:
        tenant = await sql.get_tenant(conn, slug)
        if tenant is None:
            raise not_found(f"Tenant {slug!r}")
        await tenant_sql.upsert_destination(
            conn,
            tenant_id=tenant.id,
            url=checked.url,
            secret=services.cipher.encrypt_json({"secret": checked.secret}),
            enabled=checked.enabled,
        )
    log.info("admin.destination_set", tenant=slug, enabled=checked.enabled)
    return await show_tenant(services, slug=slug)


# --- connections ------------------------------------------------------------------------------


def _fingerprint(services: Services, secrets: dict[str, Any]) -> str:
    # Keyed, so a short API key cannot be recovered by hashing guesses against it.
    key = derive_keys(services.settings.secret_keys, "admin-secrets-fingerprint")[0]
    mac = hmac.new(key, orjson.dumps(secrets, option=orjson.OPT_SORT_KEYS), hashlib.sha256)
    return mac.hexdigest()[:16]


def _secrets_view(services: Services, encrypted: bytes) -> s.SecretsView:
    try:
        secrets = services.cipher.decrypt_json(encrypted)
    except ValueError:
        return s.SecretsView(names=[], fingerprint="unreadable")
    return s.SecretsView(names=sorted(secrets), fingerprint=_fingerprint(services, secrets))


def _connection_view(services: Services, row: Row[Any]) -> s.ConnectionView:
    return s.ConnectionView(
        id=row.id,
        tenant=row.tenant_slug,
        source=row.source,
        name=row.name,
        account=row.account,
        enabled=row.enabled,
        options=dict(row.options or {}),
        secrets=_secrets_view(services, row.secrets),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _checked(tenant: str, spec: ConnectionSpec, secrets: dict[str, Any]) -> list[str]:
    """The source's own validation, as ``hirehook tenants load`` runs it (never quotes a
    secret value); the connection's credential fingerprints."""
    try:
        return check_connection(tenant, spec, secrets)
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def _conflict(exc: IntegrityError, tenant: str, source: str, name: str) -> AppError:
    if "uq_connection_tenant_id_source_name" in str(exc.orig):
        message = (
            f"Tenant {tenant!r} has a {source} connection named {name!r} already; give this "
            "one another name, or change that one."
        )
    else:
        message = f"Another {source} connection has this account."
    return AppError(409, message, type(exc.orig).__name__, code="conflict")


def _known_connection(connection_id: int) -> None:
    # An id no bigint can hold names no connection; the driver would fail on it instead.
    if not 1 <= connection_id <= s.INT64_MAX:
        raise not_found(f"Connection {connection_id}")


async def list_connections(
    services: Services, *, tenant: str | None = None, source: str | None = None
) -> list[s.ConnectionView]:
    """Connections, optionally of one tenant or source."""
    async with services.engine.connect() as conn:
        rows = await sql.list_connections(conn, tenant=tenant, source=source)
    return [_connection_view(services, row) for row in rows]


async def show_connection(services: Services, *, connection_id: int) -> s.ConnectionView:
    """One connection."""
    _known_connection(connection_id)
    async with services.engine.connect() as conn:
        row = await sql.get_connection(conn, connection_id)
    if row is None:
        raise not_found(f"Connection {connection_id}")
    return _connection_view(services, row)


async def create_connection(services: Services, *, spec: s.ConnectionCreate) -> s.ConnectionView:
    """A new connection, checked by its source before it is stored."""
    conn_spec = ConnectionSpec(
        source=spec.source,
        name=spec.name,
        account=spec.account,
        enabled=spec.enabled,
        options=spec.options,
        secrets=spec.secrets,
    )
    credential_ids = _checked(spec.tenant, conn_spec, conn_spec.secrets)
    try:
        async with services.engine.begin() as conn:
            tenant = await sql.get_tenant(conn, spec.tenant)
            if tenant is None:
                raise not_found(f"Tenant {spec.tenant!r}")
            connection_id = await sql.insert_connection(
                conn,
                tenant_id=tenant.id,
                source=spec.source,
                name=spec.name,
                account=spec.account,
                enabled=spec.enabled,
                secrets=services.cipher.encrypt_json(conn_spec.secrets),
                options=conn_spec.options,
                credential_ids=credential_ids,
            )
    except IntegrityError as exc:
        raise _conflict(exc, spec.tenant, spec.source, spec.name) from exc
    services.connections.invalidate()
    log.info("admin.connection_created", connection_id=connection_id, source=spec.source)
    return await show_connection(services, connection_id=connection_id)


async def update_connection(
    services: Services, *, connection_id: int, spec: s.ConnectionUpdate
) -> s.ConnectionView:
    """Change a connection's name, account, options or enabled flag (checked again with its
    current secrets)."""
    return await _rewrite(services, connection_id, spec, None)


async def rotate_secrets(
    services: Services, *, connection_id: int, spec: s.SecretsRotate
) -> s.ConnectionView:
    """Replace a connection's secrets (or, with ``merge``, only those given)."""
    return await _rewrite(services, connection_id, s.ConnectionUpdate(), spec)


async def _rewrite(
    services: Services,
    connection_id: int,
    spec: s.ConnectionUpdate,
    rotate: s.SecretsRotate | None,
) -> s.ConnectionView:
    _known_connection(connection_id)
    row: Row[Any] | None = None
    try:
        async with services.engine.begin() as conn:
            row = await sql.get_connection(conn, connection_id, lock=True)
            if row is None:
                raise not_found(f"Connection {connection_id}")
            try:
                secrets = services.cipher.decrypt_json(row.secrets)
            except ValueError:
                if rotate is None or rotate.merge:
                    raise invalid(
                        "The connection's stored secrets cannot be read; replace them all."
                    ) from None
                secrets = {}
            if rotate is not None:
                secrets = {**secrets, **rotate.secrets} if rotate.merge else dict(rotate.secrets)
            changes = spec.model_dump(exclude_unset=True)
            merged = ConnectionSpec(
                source=row.source,
                name=changes.get("name", row.name),
                account=changes.get("account", row.account),
                enabled=changes.get("enabled", row.enabled),
                options=changes.get("options", dict(row.options or {})),
                secrets=secrets,
            )
            secrets = merged.secrets
            credential_ids = _checked(row.tenant_slug, merged, secrets)
            await sql.update_connection(
                conn,
                connection_id,
                name=merged.name,
                account=merged.account,
                enabled=merged.enabled,
                options=merged.options,
                secrets=services.cipher.encrypt_json(secrets),
                credential_ids=credential_ids,
            )
    except IntegrityError as exc:
        assert row is not None  # only the update raises it
        name = spec.name if spec.name is not None else row.name
        raise _conflict(exc, row.tenant_slug, row.source, name) from exc
    # This process forgets at once; others within HIREHOOK_CONNECTION_CACHE_TTL_S.
    services.connections.invalidate()
    log.info(
        "admin.connection_updated",
        connection_id=connection_id,
        fields=sorted(spec.model_fields_set),
        secrets_rotated=rotate is not None,
    )
    return await show_connection(services, connection_id=connection_id)


async def set_payload_fields(
    services: Services, *, connection_id: int, spec: s.PayloadFieldsSet
) -> s.PayloadFieldsResult:
    """Name the body's fields in ``options.payload_fields`` (checked by the connection's
    source), then parse every quarantined record of the connection again, as a dead-letter
    retry does: those that now fit go on to enrichment and delivery."""
    current = await show_connection(services, connection_id=connection_id)
    source = REGISTRY.get(current.source)
    if source is None or not source.payload_fields:
        raise invalid(f"A {current.source} connection has no payload_fields to set.")
    options = dict(current.options)
    fields = dict(options.get("payload_fields") or {})
    for name, names in spec.payload_fields.items():
        if names:
            fields[name] = names
        else:
            fields.pop(name, None)
    if fields:
        options["payload_fields"] = fields
    else:
        options.pop("payload_fields", None)
    # A change to other options between the read above and this write is overwritten, as two
    # concurrent updates overwrite each other; operators do not race on one connection.
    view = await update_connection(
        services, connection_id=connection_id, spec=s.ConnectionUpdate(options=options)
    )
    async with services.engine.connect() as conn:
        letters = await dead_sql.open_quarantine_letters(conn, connection_id)
    if letters:
        await dead_letters.retry(
            services.engine,
            services.queue,
            dead_sql.Filters(ids=[letter_id for letter_id, _ in letters]),
            reparsers(),
            note="payload_fields set",
        )
        async with services.engine.connect() as conn:
            after = await dead_sql.open_quarantine_letters(conn, connection_id)
        # A record still quarantined has a new open letter in place of the retried one.
        retried = {record_id for _, record_id in letters}
        still = len(retried & {record_id for _, record_id in after})
    else:
        still = 0
    log.info(
        "admin.payload_fields_set",
        connection_id=connection_id,
        fields=sorted(spec.payload_fields),
        reparsed=len(letters) - still,
        still_quarantined=still,
    )
    return s.PayloadFieldsResult(
        connection=view, reparsed=len(letters) - still, still_quarantined=still
    )


async def set_connection_enabled(
    services: Services, *, connection_id: int, enabled: bool
) -> s.ConnectionView:
    """Enable or disable one connection."""
    return await update_connection(
        services, connection_id=connection_id, spec=s.ConnectionUpdate(enabled=enabled)
    )


# --- records ----------------------------------------------------------------------------------


def record_filters(q: s.RecordQuery, ids: Sequence[uuid.UUID] = ()) -> query.RecordFilters:
    """The store's filters for a query."""
    subjects = {
        k: v for k, v in (("person", q.person), ("job", q.job), ("application", q.application)) if v
    }
    return query.RecordFilters(
        ids=tuple(ids),
        tenant=q.tenant,
        source=q.source,
        event_type=q.event_type,
        state=q.state,
        received_from=q.received_from,
        received_to=q.received_to,
        subjects=subjects,
    )


def encode_cursor(received_at: datetime, record_id: uuid.UUID) -> str:
    """An opaque position after which the next page starts."""
    raw = f"{received_at.isoformat()}|{record_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; 400 for one this API did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, rid = raw.split("|")
        position = datetime.fromisoformat(at), uuid.UUID(rid)
        if position[0].tzinfo is None:
            raise ValueError("no offset")
        s.storable_time(position[0])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid("The cursor is not one this API returned.") from exc
    return position


async def list_records(
    services: Services, *, q: s.RecordQuery, limit: int = 50, cursor: str | None = None
) -> s.RecordPage:
    """A page of matching records, newest first."""
    if not 1 <= limit <= PAGE_MAX:
        raise invalid(f"limit must be between 1 and {PAGE_MAX}.")
    after = decode_cursor(cursor) if cursor else None
    async with services.engine.connect() as conn:
        # A misspelt tenant is an error, not an empty page that reads as "no records".
        if q.tenant is not None and await sql.get_tenant(conn, q.tenant) is None:
            raise not_found(f"Tenant {q.tenant!r}")
        rows = await query.list_records(conn, record_filters(q), limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    summaries = [s.RecordSummary.model_validate(r, from_attributes=True) for r in rows]
    last = summaries[-1] if more else None
    return s.RecordPage(
        records=summaries,
        next_cursor=None if last is None else encode_cursor(last.received_at, last.id),
    )


def _body(raw: bytes | None) -> s.Body:
    data = bytes(raw or b"")
    try:
        decoded: str | None = data.decode()
    except UnicodeDecodeError:
        decoded = None
    return s.Body(base64=base64.b64encode(data).decode(), text=decoded, size=len(data))


async def show_record(services: Services, *, record_id: uuid.UUID) -> s.RecordDetail:
    """One record's whole story: what arrived, the answer, enrichment, delivery, dead letters
    and replays."""
    async with services.engine.connect() as conn:
        found = await query.get_record(conn, record_id)
        if found is None:
            raise not_found(f"Record {record_id}")
        outbox = await query.outbox_of(conn, record_id)
        delivery = await query.delivery_of(conn, record_id)
        letters = await query.dead_letters_of(conn, record_id)
        replays = await sql.replays_of(conn, record_id)
        tried = await attempts_sql.of_record(conn, record_id)
        written = await story.written(
            conn,
            record_id=record_id,
            tenant_id=found.tenant_id,
            source=found.source,
            subjects=dict(found.subjects or {}),
        )
    record = found
    return s.RecordDetail(
        id=record.id,
        tenant=found.tenant,
        source=record.source,
        event_type=record.event_type,
        known=record.known,
        state=record.state,
        subjects=dict(record.subjects or {}),
        received_at=record.received_at,
        processed_at=record.processed_at,
        answer_status=record.answer_status,
        dedupe_key=record.dedupe_key,
        thread=record.thread,
        headers=dict(record.headers or {}),
        raw_body=_body(record.raw_body),
        payload=record.payload,
        answer=(
            None
            if record.answer_status is None
            else s.AnswerView(
                status=record.answer_status,
                headers=dict(record.answer_headers or {}),
                body=_body(record.answer_body),
            )
        ),
        ack_ms=record.ack_ms,
        outbox=None if outbox is None else s.WorkView.model_validate(outbox, from_attributes=True),
        delivery=(
            None if delivery is None else s.WorkView.model_validate(delivery, from_attributes=True)
        ),
        dead_letters=[
            s.DeadLetterView(**_letter_fields(row), tenant=found.tenant) for row in letters
        ],
        replays=[s.ReplayRef.model_validate(r, from_attributes=True) for r in replays],
        quarantine=await _quarantine(services, record),
        attempts=[_attempt_view(row) for row in tried],
        written=[s.WrittenView.model_validate(w, from_attributes=True) for w in written],
    )


def _attempt_view(row: Row[Any]) -> s.AttemptView:
    answer = None if row.answer is None else bytes(row.answer).decode(errors="replace")
    return s.AttemptView(
        attempted_at=row.attempted_at,
        latency_ms=row.latency_ms,
        status=row.status,
        error=row.error,
        answer=answer,
        answer_size=row.answer_size,
    )


async def _quarantine(services: Services, record: Row[Any]) -> s.QuarantineView | None:
    """For a quarantined record, what its source makes of it now (the connection's current
    options), so the operator sees what to map."""
    if record.state != "quarantined":
        return None
    async with services.engine.connect() as conn:
        connection = await sql.get_connection(conn, record.connection_id)
    reparse = reparsers().get(record.source)
    if connection is None or reparse is None:
        return None
    parsed = reparse(record.payload, dict(record.headers or {}), dict(connection.options or {}))
    return s.QuarantineView(
        connection_id=record.connection_id,
        problems=list(parsed.problems),
        missing={name: list(tried) for name, tried in parsed.missing.items()},
        body_fields=_field_paths(record.payload),
    )


# Enough to map from, not a dump of a large body.
_FIELD_PATHS_MAX = 100


def _field_paths(payload: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """The dotted paths of a JSON object's values (nested objects entered, three levels), in
    key order: the stored JSONB does not keep the body's."""
    if not isinstance(payload, dict):
        return []
    paths: list[str] = []
    for key, value in sorted(payload.items()):
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth < 2:
            paths += _field_paths(value, f"{path}.", depth + 1)
        else:
            paths.append(path)
        if len(paths) >= _FIELD_PATHS_MAX:
            break
    return paths[:_FIELD_PATHS_MAX]


def _letter_fields(row: Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in s.DeadLetterView.model_fields if name != "tenant"}


# --- replay -----------------------------------------------------------------------------------


async def replay(
    services: Services,
    *,
    actor: str,
    request: s.ReplayRequest,
    progress: Callable[[int, int], None] | None = None,
) -> s.ReplayResult:
    """Run enrichment (and failed deliveries) again for the named or matching records.

    Idempotent in effect: enrichment upserts are forward-only by version, so a second run
    updates the same normalized rows, and a delivery the destination acknowledged is never
    reopened (a record owes at most one delivery row). A record whose bodies were erased (or
    purged by retention) is skipped and counted: there is nothing left to send. Each batch
    commits with its entry in the ``replay`` log; jobs are published after each commit (the
    sweeper covers a lost one).
    ``progress(done, total)`` is called after each batch.
    """
    # Given both, even with an empty list, the caller meant something we cannot tell apart.
    if request.filters is not None and "record_ids" in request.model_fields_set:
        raise invalid("Name the records to replay: record_ids, or filters (not both).")
    if request.filters is None and not request.record_ids:
        raise invalid("Name the records to replay: record_ids, or filters (not both).")
    described: dict[str, Any]
    if request.filters is not None:
        filters = record_filters(request.filters)
        if filters == query.RecordFilters():
            raise invalid("Replaying every record needs at least one filter.")
        described = request.filters.model_dump(mode="json", exclude_none=True)
    else:
        filters = query.RecordFilters(ids=tuple(request.record_ids))
        described = {"record_ids": [str(i) for i in request.record_ids]}
    async with services.engine.connect() as conn:
        ids = await query.record_ids(conn, filters, limit=REPLAY_MAX + 1)
    if len(ids) > REPLAY_MAX:
        raise invalid(
            f"More than {REPLAY_MAX:,} records match; one replay reopens at most that many. "
            "Narrow the filters (received_from and received_to, a tenant, a source)."
        )
    if request.record_ids and not ids:
        raise not_found("None of the records named")
    if request.record_ids:
        await _refuse_unreplayable(services, ids)
    if request.dry_run:
        return s.ReplayResult(id=None, matched=len(ids), enrichments=0, deliveries=0, dry_run=True)
    _confirmed(request, len(ids))
    async with services.engine.begin() as conn:
        replay_id = await sql.start_replay(conn, actor=actor, filters=described)
    enrichments = deliveries = skipped = 0
    for start in range(0, len(ids), REPLAY_BATCH):
        batch = ids[start : start + REPLAY_BATCH]
        async with services.engine.begin() as conn:
            skipped += len(await sql.bodiless(conn, batch))
            enrich, deliver = await sql.reopen_for_replay(conn, batch, note=f"replay {replay_id}")
            await sql.add_to_replay(conn, replay_id, enrich)
        await services.queue.enqueue_records(enrich)
        await services.queue.enqueue_deliveries(deliver)
        enrichments += len(enrich)
        deliveries += len(deliver)
        if progress is not None:
            progress(start + len(batch), len(ids))
    log.info(
        "admin.replayed",
        replay_id=replay_id,
        actor=actor,
        matched=len(ids),
        enrichments=enrichments,
        deliveries=deliveries,
        skipped_erased=skipped,
    )
    return s.ReplayResult(
        id=replay_id,
        matched=len(ids),
        enrichments=enrichments,
        deliveries=deliveries,
        skipped_erased=skipped,
    )


async def _refuse_unreplayable(services: Services, ids: list[uuid.UUID]) -> None:
    """A 409 saying what to do instead when none of the records named can be replayed: a
    replay runs enrichment, which a quarantined event (it did not fit its model) or an event
    type this version does not model never reaches."""
    async with services.engine.connect() as conn:
        rows = await query.list_records(conn, query.RecordFilters(ids=tuple(ids)), limit=len(ids))
    if any(r.known and r.state != "quarantined" for r in rows):
        return
    if any(r.state == "quarantined" for r in rows):
        message = (
            "Nothing to replay: the record is quarantined (it did not fit its model). Name the "
            "body's fields on the connection (`hirehook connections set-payload-fields`, or "
            "Map fields in the console), which parses it again, or retry its intake dead "
            "letter (`hirehook dead-letters retry`) once the cause is fixed."
        )
    else:
        message = (
            "Nothing to replay: the record's event type is not one this version models; it is "
            "stored, never enriched or delivered."
        )
    raise AppError(409, message, code="not_replayable")


def _confirmed(request: s.ReplayRequest, matched: int) -> None:
    """Refuse a filtered replay of more than :data:`REPLAY_CONFIRM_ABOVE` records unless
    ``confirm`` allows at least as many as match (records named by id are explicit enough)."""
    if request.filters is None or matched <= REPLAY_CONFIRM_ABOVE:
        return
    if request.confirm is not None and request.confirm >= matched:
        return
    raise AppError(
        400,
        f"{matched} records match these filters; a replay of more than "
        f"{REPLAY_CONFIRM_ABOVE:,} runs only when confirmed. Send confirm={matched} (on the "
        f"command line --confirm {matched}) to replay them; dry_run=true (--dry-run) counts "
        "them without replaying.",
        code="confirmation_required",
    )


# --- dead letters -----------------------------------------------------------------------------


def reparsers() -> dict[str, Reparse]:
    """Each source's parser, for quarantined events (polled records of any source included)."""
    return {name: with_polled(src.reparse) for name, src in REGISTRY.items()}


def _dead_filters(action: s.DeadLetterAction, verb: str) -> dead_sql.Filters:
    named = (
        action.ids or action.kind or action.stage or action.tenant or action.source or action.reason
    )
    if not named and not action.all:
        raise invalid(f"Name the dead letters to {verb}: ids, filters, or all=true.")
    return dead_sql.Filters(
        ids=action.ids,
        kind=action.kind,
        stage=action.stage,
        tenant=action.tenant,
        source=action.source,
        reason=action.reason,
    )


async def list_dead_letters(
    services: Services,
    *,
    kind: dead_sql.FailureKind | None = None,
    stage: dead_sql.Stage | None = None,
    tenant: str | None = None,
    source: str | None = None,
    include_resolved: bool = False,
    limit: int = 200,
) -> list[s.DeadLetterView]:
    """Dead letters by cause (``configuration``: the tenant must fix something; ``pipeline``:
    the ATS or Hirehook failed past every retry), oldest first."""
    filters = dead_sql.Filters(
        kind=kind,
        stage=stage,
        tenant=tenant,
        source=source,
    )
    letters = await dead_letters.list_letters(
        services.engine, filters, include_resolved=include_resolved, limit=limit
    )
    return [s.DeadLetterView.model_validate(x, from_attributes=True) for x in letters]


def _none_open() -> AppError:
    """The 409 of letters named by id none of which is open: acting again does nothing."""
    return AppError(
        409,
        "None of the dead letters named is open (already retried, discarded or erased); "
        "`hirehook dead-letters list --resolved` shows how each was resolved.",
        code="not_open",
    )


async def retry_dead_letters(services: Services, *, action: s.DeadLetterAction) -> s.ActionResult:
    """Start the stage over for the matching open letters, once their cause is fixed; a
    quarantined event that still does not fit is counted in ``still_failing``."""
    filters = _dead_filters(action, "retry")
    # Parsing again happens now, so whether it failed again is known now; the other stages
    # run later in the workers.
    intake: list[dead_sql.DeadLetterView] = []
    if filters.stage in (None, "intake"):
        intake = await dead_letters.list_letters(
            services.engine, dataclasses.replace(filters, stage="intake"), limit=REPLAY_MAX
        )
    count = await dead_letters.retry(
        services.engine, services.queue, filters, reparsers(), note=action.note
    )
    if count == 0 and action.ids:
        raise _none_open()
    still = 0
    if intake:
        async with services.engine.connect() as conn:
            rows = await query.list_records(
                conn,
                query.RecordFilters(ids=tuple({x.record_id for x in intake})),
                limit=len(intake),
            )
        still = sum(1 for r in rows if r.state == "quarantined")
    log.info("admin.dead_letters_retried", count=count, still_failing=still)
    return s.ActionResult(count=count, still_failing=still)


async def discard_dead_letters(services: Services, *, action: s.DeadLetterAction) -> s.ActionResult:
    """Give up for good on the matching open letters, with a note saying why."""
    count = await dead_letters.discard(
        services.engine, _dead_filters(action, "discard"), note=action.note
    )
    if count == 0 and action.ids:
        raise _none_open()
    log.info("admin.dead_letters_discarded", count=count)
    return s.ActionResult(count=count)


async def dead_letter_groups(
    services: Services, *, tenant: str | None = None, source: str | None = None
) -> list[s.DeadLetterGroup]:
    """Open dead letters grouped by cause, reason and stage, with their counts: the number a
    retry of the group (its three as filters, with ``tenant`` and ``source``) starts over."""
    async with services.engine.connect() as conn:
        groups = await story.letter_groups(conn, tenant=tenant, source=source)
    return [s.DeadLetterGroup.model_validate(g, from_attributes=True) for g in groups]


# --- refusals ---------------------------------------------------------------------------------


async def list_refusals(
    services: Services,
    *,
    since: datetime | None = None,
    tenant: str | None = None,
    source: str | None = None,
    status: int | None = None,
    address: str | None = None,
    limit: int = 200,
) -> list[s.RefusalView]:
    """Refused requests (401, 413, 429) counted per minute, tenant, source, reason and address,
    newest first, from ``since`` (default: the last 24 hours; kept 7 days). What this process
    counted and has not written yet is written first (app.refusals)."""
    await services.refusals.flush(services.engine)
    since = since or datetime.now(UTC) - timedelta(days=1)
    async with services.engine.connect() as conn:
        rows = await refusals_sql.listed(
            conn,
            since=since,
            tenant=tenant,
            source=source,
            status=status,
            address=address,
            limit=limit,
        )
    return [
        s.RefusalView(
            minute=row.minute,
            tenant=row.tenant,
            source=row.source,
            status=row.status,
            reason=row.reason,
            address=row.address,
            count=row.n,
            last_at=row.last_at,
        )
        for row in rows
    ]


# --- erasure ----------------------------------------------------------------------------------


async def erase_candidate(
    services: Services, *, request: s.ErasureRequest, actor: str
) -> s.ErasureView:
    """Erase everything stored about one candidate (app.privacy), audited under ``actor``."""
    if request.source not in REGISTRY:
        raise AppError(
            400, f"Unknown source; one of {', '.join(sorted(REGISTRY))}.", code="invalid_request"
        )
    try:
        report = await privacy.erase(
            services.engine,
            services.queue.redis,
            tenant=request.tenant,
            source=request.source,
            candidate_id=request.candidate_id,
            actor=actor,
            email=request.email,
        )
    except privacy.UnknownTenantError:
        raise not_found(f"Tenant {request.tenant!r}") from None
    except (RedisError, OSError, TimeoutError) as exc:
        # Nothing was erased: the cached documents go before the transaction commits.
        raise AppError(
            503, "Redis did not answer; nothing was erased. Please retry.", type(exc).__name__
        ) from exc
    log.info("admin.candidate_erased", tenant=request.tenant, source=request.source)
    return s.ErasureView.model_validate(report, from_attributes=True)


# --- statistics -------------------------------------------------------------------------------


async def stats(
    services: Services,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
    source: str | None = None,
) -> s.Stats:
    """Per tenant and source over ``[since, until)`` (default: the last 24 hours): records by
    state, duplicates (counted per hour in Redis, see :meth:`app.queue.Queue.count_duplicate`),
    ack latency percentiles; and the backlog now."""
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
