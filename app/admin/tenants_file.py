"""Tenants and connections declared in a TOML file, loaded idempotently at start-up."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.platform.crypto import Cipher
from app.platform.outbound import OutboundUrl
from app.schemas import polling
from app.sources import REGISTRY
from app.store import tenants as sql
from app.verifiers.standard_webhooks import decode_secret, require_strong


class ConnectionSpec(BaseModel):
    """One ``[[tenant.connection]]`` table."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    name: str = "default"
    account: str | None = None
    enabled: bool = True
    secrets: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_secret_in_options(self) -> ConnectionSpec:
        # A Cloud Elements polling block is pasted with its api.key: options are stored and
        # shown in clear, so the key moves to the (encrypted) secrets before anything else.
        self.options, self.secrets = polling.lift_secrets(self.options, self.secrets)
        return self


class DestinationSpec(BaseModel):
    """A ``[tenant.destination]`` table: where normalized events are delivered."""

    model_config = ConfigDict(extra="forbid")

    # Signed events carrying personal data go here: the outbound policy (app/platform/outbound.py).
    url: OutboundUrl
    # A Standard Webhooks secret, ``whsec_`` + base64; may be written "env:NAME".
    secret: str = Field(min_length=1, repr=False)
    enabled: bool = True


class TenantSpec(BaseModel):
    """One ``[[tenant]]`` table."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    # Days a record's bodies and the normalized documents are kept (docs/privacy.md); unset
    # falls back to HIREHOOK_RETENTION_DAYS.
    retention_days: int | None = Field(default=None, ge=1)
    connection: list[ConnectionSpec] = Field(default_factory=list)
    destination: DestinationSpec | None = None

    @field_validator("connection")
    @classmethod
    def _distinct(cls, connections: list[ConnectionSpec]) -> list[ConnectionSpec]:
        # A connection is known by its tenant, source and name: a second one with the same
        # would silently replace the first when loaded, which then is never used.
        seen: set[tuple[str, str]] = set()
        for connection in connections:
            key = (connection.source, connection.name)
            if key in seen:
                raise ValueError(
                    f"the {connection.source} connection named {connection.name!r} is declared "
                    "twice; give each connection of a source its own name"
                )
            seen.add(key)
        return connections


class TenantsFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    tenant: list[TenantSpec] = Field(default_factory=list)

    @field_validator("tenant")
    @classmethod
    def _distinct(cls, tenants: list[TenantSpec]) -> list[TenantSpec]:
        slugs = [t.slug for t in tenants]
        twice = sorted({slug for slug in slugs if slugs.count(slug) > 1})
        if twice:
            raise ValueError(f"tenant {twice[0]!r} is declared twice; declare each tenant once")
        return tenants


def _resolve(value: Any) -> Any:
    # Secrets may be written "env:NAME" so the file itself can be committed.
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} (named in the tenants file) is not set")
        return os.environ[name]
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return value


def check_connection(tenant: str, conn: ConnectionSpec, secrets: dict[str, Any]) -> list[str]:
    """Refuse a connection its source cannot use, naming the setting (never a secret value);
    returns the connection's credential fingerprints (see :class:`app.sources.base.Source`)."""
    where = f"tenant {tenant!r}, {conn.source} connection {conn.name!r}"
    source = REGISTRY.get(conn.source)
    if source is None:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"{where}: unknown source {conn.source!r} (one of: {known})")
    try:
        source.check(conn.options, secrets)
        # Polling is configured the same way whatever the source (app/schemas/polling.py).
        polling.check(conn.options, secrets)
        return source.credential_ids(conn.options, secrets) if source.credential_ids else []
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_tenants_file(path: Path) -> TenantsFile:
    """Parse and validate a tenants file."""
    with path.open("rb") as fh:
        return TenantsFile.model_validate(tomllib.load(fh))


async def apply_tenants(spec: TenantsFile, *, engine: AsyncEngine, cipher: Cipher) -> int:
    """Create or update every tenant and connection in ``spec`` in one transaction (all or
    nothing: a file with one bad connection changes nothing); returns connections written."""
    written = 0
    async with engine.begin() as conn:
        for tenant in spec.tenant:
            tenant_id = await sql.upsert_tenant(
                conn, slug=tenant.slug, name=tenant.name, retention_days=tenant.retention_days
            )
            if tenant.destination is not None:
                await _apply_destination(conn, tenant.slug, tenant_id, tenant.destination, cipher)
            for connection in tenant.connection:
                secrets = _resolve(connection.secrets)
                credential_ids = check_connection(tenant.slug, connection, secrets)
                await sql.upsert_connection(
                    conn,
                    tenant_id=tenant_id,
                    source=connection.source,
                    name=connection.name,
                    account=connection.account,
                    enabled=connection.enabled,
                    secrets=cipher.encrypt_json(secrets),
                    options=connection.options,
                    credential_ids=credential_ids,
                )
                written += 1
    return written


async def _apply_destination(
    conn: AsyncConnection, tenant: str, tenant_id: int, spec: DestinationSpec, cipher: Cipher
) -> None:
    secret = str(_resolve(spec.secret))
    # Refuse a malformed or short secret now, not at the first delivery.
    try:
        decode_secret(secret)
        require_strong(secret, what="destination.secret")
    except ValueError as exc:
        raise ValueError(f"tenant {tenant!r}: {exc}") from None
    await sql.upsert_destination(
        conn,
        tenant_id=tenant_id,
        url=spec.url,
        secret=cipher.encrypt_json({"secret": secret}),
        enabled=spec.enabled,
    )
