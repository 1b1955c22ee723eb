"""Tenants and connections declared in a TOML file, loaded idempotently at start-up."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.crypto import Cipher
from app.db import unit_of_work
from app.models import Connection, Destination, Tenant
from app.verifiers.standard_webhooks import decode_secret

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class ConnectionSpec(BaseModel):
    """One ``[[tenant.connection]]`` table."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    name: str = "default"
    account: str | None = None
    enabled: bool = True
    secrets: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class DestinationSpec(BaseModel):
    """A ``[tenant.destination]`` table: where normalized events are delivered."""

    model_config = ConfigDict(extra="forbid")

    url: str
    # A Standard Webhooks secret, ``whsec_`` + base64; may be written "env:NAME".
    secret: str = Field(min_length=1, repr=False)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _https(cls, url: str) -> str:
        parts = urlsplit(url)
        # Events carry personal data: TLS everywhere except to this machine.
        if parts.scheme == "https" and parts.hostname:
            return url
        if parts.scheme == "http" and parts.hostname in _LOOPBACK:
            return url
        raise ValueError("a destination must be an https:// URL (http:// only for loopback)")


class TenantSpec(BaseModel):
    """One ``[[tenant]]`` table."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    connection: list[ConnectionSpec] = Field(default_factory=list)
    destination: DestinationSpec | None = None


class TenantsFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    tenant: list[TenantSpec] = Field(default_factory=list)


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


def check_connection(tenant: str, conn: ConnectionSpec, secrets: dict[str, Any]) -> None:
    """Refuse a connection its source cannot use, naming the setting (never a secret value)."""
    from app.registry import CONNECTION_CHECKS  # the registry imports every source

    check = CONNECTION_CHECKS.get(conn.source)
    if check is None:
        return
    try:
        check(conn.options, secrets)
    except ValueError as exc:
        raise ValueError(
            f"tenant {tenant!r}, {conn.source} connection {conn.name!r}: {exc}"
        ) from None


def read_tenants_file(path: Path) -> TenantsFile:
    """Parse and validate a tenants file."""
    with path.open("rb") as fh:
        return TenantsFile.model_validate(tomllib.load(fh))


async def apply_tenants(
    spec: TenantsFile, *, sessions: async_sessionmaker[AsyncSession], cipher: Cipher
) -> int:
    """Create or update every tenant and connection in ``spec``; returns connections written."""
    written = 0
    async with unit_of_work(sessions) as session:
        for tenant in spec.tenant:
            tenant_id = (
                await session.execute(
                    insert(Tenant)
                    .values(slug=tenant.slug, name=tenant.name)
                    .on_conflict_do_update(
                        index_elements=[Tenant.slug],
                        set_={"name": tenant.name, "updated_at": func.now()},
                    )
                    .returning(Tenant.id)
                )
            ).scalar_one()
            if tenant.destination is not None:
                await _apply_destination(session, tenant_id, tenant.destination, cipher)
            for conn in tenant.connection:
                secrets = _resolve(conn.secrets)
                check_connection(tenant.slug, conn, secrets)
                values = {
                    "tenant_id": tenant_id,
                    "source": conn.source,
                    "name": conn.name,
                    "account": conn.account,
                    "enabled": conn.enabled,
                    "secrets": cipher.encrypt_json(secrets),
                    "options": conn.options,
                }
                await session.execute(
                    insert(Connection)
                    .values(**values)
                    .on_conflict_do_update(
                        index_elements=[Connection.tenant_id, Connection.source, Connection.name],
                        set_={**values, "updated_at": func.now()},
                    )
                )
                written += 1
    return written


async def _apply_destination(
    session: AsyncSession, tenant_id: int, spec: DestinationSpec, cipher: Cipher
) -> None:
    secret = str(_resolve(spec.secret))
    decode_secret(secret)  # refuse a malformed secret now, not at the first delivery
    values = {
        "tenant_id": tenant_id,
        "url": spec.url,
        "secret": cipher.encrypt_json({"secret": secret}),
        "enabled": spec.enabled,
    }
    await session.execute(
        insert(Destination)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[Destination.tenant_id], set_={**values, "updated_at": func.now()}
        )
    )
