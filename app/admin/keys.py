"""Admin API keys: ``hh_admin_`` + 256 random bits, stored as their SHA-256 digest.

A key has the entropy of a cryptographic key, not of a password, so a fast unsalted hash is
enough: nobody can search 2^256 candidates, and a digest lookup through a unique index takes
the same path whatever the key. The digest found is compared again with
:func:`hmac.compare_digest` before it is trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.admin.schemas import AdminKeyView, CreatedAdminKey
from app.platform.errors import AppError
from app.store import admin as sql

PREFIX = "hh_admin_"
# Shown in listings: the prefix and a few characters, enough to tell keys apart.
_SHOWN_CHARS = len(PREFIX) + 6


def unauthorized() -> AppError:
    """The one answer for a missing, malformed, unknown or revoked key."""
    return AppError(
        401,
        "A valid admin API key is required: send it as 'Authorization: Bearer <key>'.",
        code="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )


def new_key() -> str:
    """A fresh key."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    """What is stored of a key."""
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made an admin request: the key's id and name (recorded with what it did), or the
    operator of the host itself (``local``: a command run in process, no key)."""

    key_id: int
    name: str
    local: bool = False

    @property
    def actor(self) -> str:
        """Who an audit row names: ``admin:<key name>``, or the local operator's name."""
        return self.name if self.local else f"admin:{self.name}"


def local_operator(name: str) -> Caller:
    """The operator of a host holding Hirehook's settings (its database credentials and
    secret key), acting in process: the admin operations without a key."""
    return Caller(0, name, local=True)


async def create(engine: AsyncEngine, name: str) -> CreatedAdminKey:
    """A new named key; the returned ``key`` is never stored and cannot be shown again."""
    key = new_key()
    try:
        async with engine.begin() as conn:
            row = await sql.create_key(
                conn, name=name, digest=digest(key), prefix=key[:_SHOWN_CHARS]
            )
    except IntegrityError as exc:
        raise AppError(409, f"An admin key named {name!r} exists.", code="conflict") from exc
    return CreatedAdminKey(**_view(row).model_dump(), key=key)


async def list_keys(engine: AsyncEngine) -> list[AdminKeyView]:
    """Every key, revoked ones included."""
    async with engine.connect() as conn:
        return [_view(row) for row in await sql.list_keys(conn)]


async def revoke(engine: AsyncEngine, key_id: int) -> AdminKeyView:
    """Revoke a key: requests carrying it are refused from now on."""
    async with engine.begin() as conn:
        row = await sql.revoke_key(conn, key_id)
    if row is None:
        raise AppError(404, f"No admin key has id {key_id}.", code="not_found")
    return _view(row)


async def authenticate(engine: AsyncEngine, key: str | None) -> Caller:
    """The caller a presented key belongs to; the 401 for a missing, unknown or revoked key."""
    # Anything else is not one of our keys; refused without a query, like an unknown one.
    if not key or not key.startswith(PREFIX) or len(key) > 200:
        raise unauthorized()
    presented = digest(key)
    async with engine.begin() as conn:
        row = await sql.use_key(conn, presented)
    if row is None or not hmac.compare_digest(bytes(row.digest), presented):
        raise unauthorized()
    return Caller(row.id, row.name)


async def start_session(engine: AsyncEngine, caller: Caller, max_age_s: int) -> str:
    """A new console session of ``caller``'s key: the id for its cookie (only its digest is
    stored, like a key's)."""
    session_id = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await sql.start_session(
            conn, digest=digest(session_id), key_id=caller.key_id, max_age_s=max_age_s
        )
    return session_id


async def session_caller(engine: AsyncEngine, session_id: str) -> Caller:
    """The caller of a live console session whose key is live; the 401 otherwise (ended by
    logging out, expired, or its key revoked)."""
    if not session_id or len(session_id) > 200:
        raise unauthorized()
    async with engine.begin() as conn:
        row = await sql.use_session(conn, digest(session_id))
    if row is None:
        raise unauthorized()
    return Caller(row.id, row.name)


async def end_session(engine: AsyncEngine, session_id: str) -> None:
    """End a console session now: its cookie, wherever a copy is, opens nothing after."""
    async with engine.begin() as conn:
        await sql.end_session(conn, digest(session_id))


def _view(row: object) -> AdminKeyView:
    return AdminKeyView.model_validate(row, from_attributes=True)
