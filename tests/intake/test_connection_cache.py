"""Connection lookups: concurrent misses of one key share a single query."""

from __future__ import annotations

import asyncio

from app.intake.connections import ConnectionStore
from app.services import Services
from tests.support.app import add_connection

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_concurrent_misses_of_one_key_make_one_query(services: Services) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    # No cache at all: only the sharing of in-flight lookups can save queries here.
    store = ConnectionStore(services.engine, services.cipher, ttl_s=0)
    found = await asyncio.gather(*(store.by_tenant("acme", "keldair") for _ in range(50)))
    assert {info.tenant_slug for info in found if info is not None} == {"acme"}
    assert all(info is not None for info in found)
    assert store.queries == 1
    # Settled lookups are not reused: the next miss asks again.
    assert await store.by_tenant("acme", "keldair") is not None
    assert store.queries == 2
    unknown = await asyncio.gather(*(store.by_tenant("nobody", "keldair") for _ in range(20)))
    assert unknown == [None] * 20
    assert store.queries == 3
