"""Operator actions on tenants: list, show, create, update, enable, destination."""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from app.admin import schemas as s
from app.admin.common import invalid, not_found
from app.admin.connections import connection_view
from app.admin.tenants_file import DestinationSpec
from app.intake.validation import describe
from app.platform.errors import AppError
from app.services import Services
from app.store import admin as sql
from app.store import tenants as tenant_sql
from app.verifiers.standard_webhooks import decode_secret, require_strong

log = structlog.get_logger(__name__)


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
    views = [connection_view(services, row) for row in connections]
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
