"""Operator actions on connections:
list, show, create, update, rotate secrets, payload fields, enable."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import structlog
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from app.admin import dead_letters
from app.admin import schemas as s
from app.admin.common import invalid, not_found, reparsers
from app.admin.tenants_file import ConnectionSpec, check_connection
from app.platform.crypto import derive_keys
from app.platform.errors import AppError
from app.services import Services
from app.sources import REGISTRY
from app.store import admin as sql
from app.store import dead_letters as dead_sql

log = structlog.get_logger(__name__)


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


def connection_view(services: Services, row: Row[Any]) -> s.ConnectionView:
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
    return [connection_view(services, row) for row in rows]


async def show_connection(services: Services, *, connection_id: int) -> s.ConnectionView:
    """One connection."""
    _known_connection(connection_id)
    async with services.engine.connect() as conn:
        row = await sql.get_connection(conn, connection_id)
    if row is None:
        raise not_found(f"Connection {connection_id}")
    return connection_view(services, row)


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
