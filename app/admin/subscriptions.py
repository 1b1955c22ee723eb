"""SmartRecruiters webhook subscriptions as operators list them (``hirehook smartrecruiters
list``, ``GET /v1/admin/tenants/{slug}/smartrecruiters/subscriptions``): never a key, only how
many are live."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from app.platform.errors import AppError
from app.schemas.smartrecruiters import SOURCE
from app.schemas.smartrecruiters_config import subscription_keys
from app.services import Services
from app.store import subscriptions as store


class SubscriptionView(BaseModel):
    """One subscription made through the SmartRecruiters API, without any secret."""

    model_config = ConfigDict(frozen=True)

    subscription: str
    status: str
    events: str
    callback_url: str
    live_keys: int
    created_at: datetime
    activated_at: datetime | None


async def list_subscriptions(services: Services, *, tenant: str) -> list[SubscriptionView]:
    """The subscriptions of ``tenant``'s enabled SmartRecruiters connection, oldest first; 404
    when it has none."""
    connection = await services.connections.by_tenant(tenant, SOURCE)
    if connection is None:
        raise AppError(
            404,
            f"Tenant {tenant!r} has no enabled smartrecruiters connection.",
            code="not_found",
        )
    async with services.engine.connect() as conn:
        rows = await store.for_connection(conn, connection.id)
    now = datetime.now(UTC).timestamp()
    found = []
    for row in rows:
        keys = subscription_keys(services.cipher.decrypt_json(row.secrets))
        found.append(
            SubscriptionView(
                subscription=row.external_id,
                status=row.status,
                events=",".join(f"{e['name']}@{e['version']}" for e in row.events),
                callback_url=row.callback_url,
                live_keys=sum(1 for k in keys if k.live(now)),
                created_at=row.created_at,
                activated_at=row.activated_at,
            )
        )
    return found
