"""A PostgreSQL that accepts connections and never answers (a paused server, a dead network
path) costs a request at most HIREHOOK_DB_REQUEST_TIMEOUT_S, then a 503 in the sender's shape.

The engine keeps the production connect, statement and pool timeouts here: the bound must come
from the request timeout alone, not from test settings that happen to be short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.intake.core import Deadline
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection, run_app
from tests.support.icims import (
    add_icims,
    basic_header,
    error_of,
    icims_options,
    icims_secrets,
    payload,
)
from tests.support.icims import send as send_icims
from tests.support.keldair import SECRET, event, signed
from tests.support.proxy import FaultProxy, Mode, via_proxy

# Generous against a loaded machine (2.5 times the bound), well under the 8 s the unbounded
# waits added up to.
LIMIT_S = 5.0


def production_timeouts(settings: Settings, proxy: FaultProxy) -> Settings:
    """The session's servers through ``proxy``, with the default database timeouts."""
    defaults = Settings.model_fields
    return via_proxy(
        settings,
        proxy,
        db_request_timeout_s=defaults["db_request_timeout_s"].default,
        db_connect_timeout_s=defaults["db_connect_timeout_s"].default,
        db_statement_timeout_s=defaults["db_statement_timeout_s"].default,
        db_pool_timeout_s=defaults["db_pool_timeout_s"].default,
    )


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def dedupe_keys(services: Services) -> list[str]:
    async with services.engine.connect() as conn:
        rows = await conn.execute(text("SELECT dedupe_key FROM record ORDER BY 1"))
        return list(rows.scalars())


def fresh_unless_thawed(retry: httpx.Response, mode: Mode) -> bool:
    """A stalled server never saw the first attempt. A paused one runs the statement it was
    sent once it resumes, so the retry may be answered as the duplicate of a committed
    record: with the answer the first attempt would have had, which is still right."""
    return mode == "freeze" or "hirehook-duplicate" not in retry.headers


def test_the_default_bound_is_two_seconds() -> None:
    assert Settings.model_fields["db_request_timeout_s"].default == 2.0


def test_a_requests_database_waits_share_one_window() -> None:
    deadline = Deadline(25)
    assert deadline.database(2.0) == pytest.approx(2.0, abs=0.05)
    # Waits add up; time between them (an iCIMS API call) does not count.
    deadline.database_s += 1.5
    assert deadline.database(2.0) == pytest.approx(0.5, abs=0.05)
    deadline.database_s += 1.0
    assert deadline.database(2.0) == 0.0
    # Never past the request's own deadline.
    assert Deadline(0.5).database(2.0) <= 0.5


@pytest.mark.parametrize("mode", ["stall", "freeze"])
async def test_keldair_answers_503_within_the_bound_and_the_retry_is_recorded_once(
    services: Services, settings: Settings, pg_proxy: FaultProxy, mode: Mode
) -> None:
    for tenant in ("acme", "globex"):
        await add_connection(
            services, tenant=tenant, source="keldair", secrets={"signing_secrets": [SECRET]}
        )

    def post(client: httpx.AsyncClient, tenant: str, event_id: str) -> Awaitable[httpx.Response]:
        body = orjson.dumps(event(event_id))
        return client.post(f"/v1/keldair/{tenant}/events", content=body, headers=signed(body))

    async for client in run_app(create_app(production_timeouts(settings, pg_proxy))):
        # acme's connection is cached and the pool holds a live connection (which a freeze
        # leaves hanging); globex's lookup must reach the database.
        assert (await post(client, "acme", "evt_warm")).status_code == 200
        pg_proxy.set_mode(mode)
        sent = [("acme", f"evt_{i}") for i in range(4)] + [("globex", "evt_cold")]
        results = await asyncio.gather(*(timed(post(client, t, e)) for t, e in sent))
        for response, _ in results:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"]["code"] == "temporarily_unavailable"
        slowest = max(elapsed for _, elapsed in results)
        assert slowest < LIMIT_S, f"a 503 took {slowest:.1f} s"

        # Back, without restarting anything: every retry is recorded, once.
        pg_proxy.set_mode("open")
        for tenant, event_id in sent:
            retry = await post(client, tenant, event_id)
            assert retry.status_code == 200, retry.text
            assert fresh_unless_thawed(retry, mode)
    assert await dedupe_keys(services) == sorted(["evt_warm", *(e for _, e in sent)])


@pytest.mark.parametrize("mode", ["stall", "freeze"])
async def test_icims_answers_503_in_its_error_standard_within_the_bound(
    services: Services, settings: Settings, pg_proxy: FaultProxy, mode: Mode
) -> None:
    await add_icims(services)
    await add_icims(
        services,
        tenant="globex",
        customer="5678",
        options=icims_options(oauth_client_id="globex-client", hmac_user="icims-globex"),
        secrets=icims_secrets(
            basic_username="icims-globex", basic_password="basic-password-globex-Hs5wQ2mC9rLd7"
        ),
    )
    globex = basic_header("icims-globex", "basic-password-globex-Hs5wQ2mC9rLd7")
    send: Callable[..., Awaitable[httpx.Response]] = send_icims

    async for client in run_app(create_app(production_timeouts(settings, pg_proxy))):
        warm = await send(client, payload("JobUnpostToWebEvent", systemId="1"))
        assert warm.status_code == 200, warm.text
        pg_proxy.set_mode(mode)
        calls = [
            send(client, payload("JobUnpostToWebEvent", systemId="2")),
            send(client, payload("AssessmentEvent")),
            send(
                client,
                payload("JobUnpostToWebEvent", customer="5678", systemId="3"),
                extra_headers=globex,
            ),
        ]
        results = await asyncio.gather(*(timed(call) for call in calls))
        for response, _ in results:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert "database" in error_of(response)["debugErrorMessage"]
        slowest = max(elapsed for _, elapsed in results)
        assert slowest < LIMIT_S, f"a 503 took {slowest:.1f} s"

        pg_proxy.set_mode("open")
        retries = [
            await send(client, payload("JobUnpostToWebEvent", systemId="2")),
            await send(client, payload("AssessmentEvent")),
            await send(
                client,
                payload("JobUnpostToWebEvent", customer="5678", systemId="3"),
                extra_headers=globex,
            ),
        ]
        for retry in retries:
            assert retry.status_code in (200, 303), retry.text
            assert fresh_unless_thawed(retry, mode)
    assert len(await dedupe_keys(services)) == 4
