"""Webhook subscriptions made at an ATS, their activation window and their (encrypted) secrets.

``secrets`` is always a Fernet token here; the caller encrypts and decrypts it.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

# A pending activation whose window has passed can no longer be completed: it failed.
_EXPIRE_PENDING = text(
    """
    UPDATE webhook_subscription SET status = 'failed', updated_at = now()
    WHERE connection_id = :connection_id AND status = 'pending' AND activation_expires_at <= now()
    """
)
# ON CONFLICT without a target also covers the one-pending-per-connection index: a second
# activation while one is under way inserts nothing.
_INSERT_PENDING = text(
    """
    INSERT INTO webhook_subscription (connection_id, external_id, status, callback_url, events,
                                      secrets, activation_expires_at)
    VALUES (:connection_id, :external_id, 'pending', :callback_url, CAST(:events AS jsonb),
            :secrets, now() + make_interval(secs => :window_s))
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
_PENDING_FOR_UPDATE = text(
    """
    SELECT * FROM webhook_subscription
    WHERE connection_id = :connection_id AND status = 'pending' AND activation_expires_at > now()
    FOR UPDATE
    """
)
_ACTIVATE = text(
    """
    UPDATE webhook_subscription
    SET status = 'active', secrets = :secrets, activated_at = now(),
        activation_expires_at = NULL, updated_at = now()
    WHERE id = :id AND status = 'pending'
    """
)
_SET_STATUS = text(
    "UPDATE webhook_subscription SET status = :status, updated_at = now() WHERE id = :id"
)
_SET_SECRETS = text(
    "UPDATE webhook_subscription SET secrets = :secrets, updated_at = now() WHERE id = :id"
)
_BY_ID = text("SELECT * FROM webhook_subscription WHERE id = :id")
_BY_EXTERNAL_ID_FOR_UPDATE = text(
    """
    SELECT * FROM webhook_subscription
    WHERE connection_id = :connection_id AND external_id = :external_id
    FOR UPDATE
    """
)
_ACTIVE_FOR_UPDATE = text(
    """
    SELECT * FROM webhook_subscription
    WHERE connection_id = :connection_id AND status = 'active'
    ORDER BY id
    FOR UPDATE
    """
)
_ACTIVE_SECRETS = text(
    """
    SELECT secrets FROM webhook_subscription
    WHERE connection_id = :connection_id AND status = 'active'
    """
)
_FOR_CONNECTION = text(
    "SELECT * FROM webhook_subscription WHERE connection_id = :connection_id ORDER BY id"
)


async def expire_pending(conn: AsyncConnection, connection_id: int) -> None:
    """Mark activations whose window has passed as failed."""
    await conn.execute(_EXPIRE_PENDING, {"connection_id": connection_id})


async def insert_pending(
    conn: AsyncConnection,
    *,
    connection_id: int,
    external_id: str,
    callback_url: str,
    events: list[dict[str, str]],
    secrets: bytes,
    window_s: float,
) -> int | None:
    """A pending activation open for ``window_s``; None if another one is under way."""
    row = (
        await conn.execute(
            _INSERT_PENDING,
            {
                "connection_id": connection_id,
                "external_id": external_id,
                "callback_url": callback_url,
                "events": orjson.dumps(events).decode(),
                "secrets": secrets,
                "window_s": window_s,
            },
        )
    ).first()
    return None if row is None else int(row.id)


async def pending_for_update(conn: AsyncConnection, connection_id: int) -> Row[Any] | None:
    """The connection's open activation, locked, if there is one."""
    return (await conn.execute(_PENDING_FOR_UPDATE, {"connection_id": connection_id})).first()


async def activate(conn: AsyncConnection, subscription_id: int, secrets: bytes) -> None:
    """A pending subscription whose handshake arrived, with its secrets updated."""
    await conn.execute(_ACTIVATE, {"id": subscription_id, "secrets": secrets})


async def set_status(conn: AsyncConnection, subscription_id: int, status: str) -> None:
    """``failed`` or ``deleted``."""
    await conn.execute(_SET_STATUS, {"id": subscription_id, "status": status})


async def set_secrets(conn: AsyncConnection, subscription_id: int, secrets: bytes) -> None:
    """Replace the subscription's encrypted secrets."""
    await conn.execute(_SET_SECRETS, {"id": subscription_id, "secrets": secrets})


async def by_id(conn: AsyncConnection, subscription_id: int) -> Row[Any] | None:
    """One subscription."""
    return (await conn.execute(_BY_ID, {"id": subscription_id})).first()


async def by_external_id_for_update(
    conn: AsyncConnection, connection_id: int, external_id: str
) -> Row[Any] | None:
    """The connection's subscription with the ATS's id ``external_id``, locked."""
    params = {"connection_id": connection_id, "external_id": external_id}
    return (await conn.execute(_BY_EXTERNAL_ID_FOR_UPDATE, params)).first()


async def active_for_update(conn: AsyncConnection, connection_id: int) -> list[Row[Any]]:
    """The connection's active subscriptions, locked."""
    return list((await conn.execute(_ACTIVE_FOR_UPDATE, {"connection_id": connection_id})).all())


async def active_secrets(conn: AsyncConnection, connection_id: int) -> list[bytes]:
    """The encrypted secrets of the connection's active subscriptions (one statement)."""
    rows = await conn.execute(_ACTIVE_SECRETS, {"connection_id": connection_id})
    return [bytes(row.secrets) for row in rows]


async def for_connection(conn: AsyncConnection, connection_id: int) -> list[Row[Any]]:
    """Every subscription of the connection, oldest first."""
    return list((await conn.execute(_FOR_CONNECTION, {"connection_id": connection_id})).all())
