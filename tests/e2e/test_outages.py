"""Real outages: PostgreSQL refused or stalled, Redis gone. Nothing is lost, nothing lies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from app.workers.jobs import process_record, sweep_outbox
from app.workers.settings import create_worker
from tests.support.app import add_connection, arq_queue, make_settings, queued_records, run_app
from tests.support.keldair import SECRET, URL, event, signed
from tests.support.proxy import FaultProxy, via_proxy


async def record_count(services: Services) -> int:
    async with services.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM record"))).scalar_one())


@pytest.mark.parametrize("mode", ["refuse", "stall"])
async def test_database_down_or_stalled_gives_fast_503_and_records_nothing(
    services: Services, settings: Settings, pg_proxy: FaultProxy, mode: str
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    async for client in run_app(create_app(via_proxy(settings, pg_proxy))):
        # Warm the connection cache so the failure hits the intake itself.
        warm = orjson.dumps(event("evt_warm"))
        assert (await client.post(URL, content=warm, headers=signed(warm))).status_code == 200
        pg_proxy.set_mode(mode)  # type: ignore[arg-type]
        body = orjson.dumps(event("evt_lost"))
        started = time.monotonic()
        response = await client.post(URL, content=body, headers=signed(body))
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "temporarily_unavailable"
        assert elapsed < 10, f"took {elapsed:.1f}s: the sender's budget is 30 s"
        pg_proxy.set_mode("open")
        # The same delivery, retried once the database is back, is recorded exactly once.
        retry = await client.post(URL, content=body, headers=signed(body))
        assert retry.status_code == 200
        assert "hirehook-duplicate" not in retry.headers
    async with services.engine.connect() as conn:
        keys = (await conn.execute(text("SELECT dedupe_key FROM record ORDER BY 1"))).scalars()
        assert list(keys) == ["evt_lost", "evt_warm"]


async def test_database_down_before_tenant_lookup_is_503_not_500(
    services: Services, settings: Settings, pg_proxy: FaultProxy
) -> None:
    pg_proxy.set_mode("refuse")
    async for client in run_app(create_app(via_proxy(settings, pg_proxy))):
        body = orjson.dumps(event())
        response = await client.post(URL, content=body, headers=signed(body))
        assert response.status_code == 503
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["postgres"] is False
    assert await record_count(services) == 0


async def test_redis_down_still_acknowledges_and_sweeper_publishes_later(
    services: Services, settings: Settings, closed_port: int
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    no_redis = make_settings(str(settings.database_url), f"redis://127.0.0.1:{closed_port}/0")
    async for client in run_app(create_app(no_redis)):
        body = orjson.dumps(event("evt_redisless"))
        started = time.monotonic()
        response = await client.post(URL, content=body, headers=signed(body))
        assert response.status_code == 200
        assert time.monotonic() - started < 5
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.json() == {
            "status": "unavailable",
            "postgres": True,
            "redis": False,
        }
    record_id = response.json()["record_id"]
    assert await arq_queue(services.queue.redis) == []
    # Redis is back: the sweeper finds the committed, unpublished outbox row.
    ctx = {"services": services}
    assert await sweep_outbox(ctx) == 1
    assert await arq_queue(services.queue.redis) == [f"record:{record_id}"]
    # Sweeping again while the job is queued publishes nothing new.
    assert await sweep_outbox(ctx) == 0
    assert len(await arq_queue(services.queue.redis)) == 1
    worker = create_worker(settings, burst=True, poll_delay=0.01)
    await worker.main()
    await worker.close()
    async with services.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT r.state, o.done_at FROM record r JOIN outbox o ON o.record_id = r.id")
            )
        ).one()
    assert row.state == "processed" and row.done_at is not None


async def test_redis_flushed_with_jobs_queued_completes_from_outbox(
    client: httpx.AsyncClient, services: Services, settings: Settings
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    for i in range(5):
        body = orjson.dumps(event(f"evt_{i}"))
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert len(await queued_records(services.queue.redis, at_least=5)) == 5
    await services.queue.redis.flushall()
    assert await sweep_outbox({"services": services}) == 5
    worker = create_worker(settings, burst=True, poll_delay=0.01)
    await worker.main()
    await worker.close()
    async with services.engine.connect() as conn:
        done = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL"))
        ).scalar_one()
    assert done == 5


async def test_job_run_twice_takes_effect_once(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    body = orjson.dumps(event("evt_twice"))
    record_id = (await client.post(URL, content=body, headers=signed(body))).json()["record_id"]
    ctx = {"services": services, "handlers": {}}
    assert await process_record(ctx, record_id) == "processed"
    assert await process_record(ctx, record_id) == "already-done"
    async with services.engine.connect() as conn:
        attempts = (await conn.execute(text("SELECT attempts FROM outbox"))).scalar_one()
    assert attempts == 1


async def test_body_trickling_past_the_deadline_is_408(
    services: Services, settings: Settings
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    body = orjson.dumps(event("evt_slow"))

    async def trickle() -> AsyncIterator[bytes]:
        yield body[:10]
        await asyncio.sleep(6)
        yield body[10:]

    quick = make_settings(
        str(settings.database_url), str(settings.redis_url), request_deadline_s=0.5
    )
    async for client in run_app(create_app(quick)):
        started = time.monotonic()
        response = await client.post(URL, content=trickle(), headers=signed(body))
        assert response.status_code == 408
        # Answered at the deadline (0.5 s), not when the body would have ended (6 s); generous
        # for a loaded machine.
        assert time.monotonic() - started < 5
    assert await record_count(services) == 0


async def test_intake_readiness_needs_postgres_only(
    services: Services, settings: Settings, pg_proxy: FaultProxy, closed_port: int
) -> None:
    no_redis = make_settings(str(settings.database_url), f"redis://127.0.0.1:{closed_port}/0")
    async for client in run_app(create_app(no_redis)):
        ready = await client.get("/health/intake")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "postgres": True, "redis": False}
    pg_proxy.set_mode("refuse")
    async for client in run_app(create_app(via_proxy(settings, pg_proxy))):
        down = await client.get("/health/intake")
        assert down.status_code == 503 and down.json()["postgres"] is False
