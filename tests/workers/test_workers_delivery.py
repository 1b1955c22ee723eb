"""Delivery of normalized events to the tenant's destination: Standard Webhooks signatures
checked by the reference library, its own retries and dead letters, and the tenants file."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from app import sources
from app.admin import dead_letters
from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
    read_tenants_file,
)
from app.platform.settings import Settings
from app.services import Services
from app.workers import jobs
from app.workers.jobs import process_record, sweep_outbox
from tests.support.app import arq_queue
from tests.support.fake_ats import FakeATS, Step
from tests.support.keldair import SECRET as KELDAIR_SECRET
from tests.support.keldair import URL as KELDAIR_URL
from tests.support.keldair import event as keldair_event
from tests.support.keldair import signed
from tests.support.workers import (
    VENDOR_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


def verified(call_headers: dict[str, str], body: bytes) -> dict[str, object]:
    """The delivered event, after the reference library accepted its signature."""
    payload = Webhook(VENDOR_SECRET).verify(body.decode(), call_headers)
    assert isinstance(payload, dict)
    return payload


async def test_enriched_record_is_delivered_signed_with_the_record_id(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    rid = await record_event(
        services, conn, "CandidateStatusUpdated", {"CandidateId": "1001", "PositionId": "77"}
    )
    await run_worker(fast_settings(settings))

    [delivery] = fake_ats.deliveries()
    assert delivery.headers["webhook-id"] == str(rid)
    event = verified(delivery.headers, delivery.body)
    assert event["type"] == "application.updated"
    data = event["data"]
    assert isinstance(data, dict)
    assert data["record_id"] == str(rid) and data["tenant"] == "acme"
    assert data["source"] == "hrmanager" and data["source_event_type"] == "CandidateStatusUpdated"
    assert data["candidate"]["id"] == "1001" and data["candidate"]["first_name"] == "Ada"
    assert data["job"]["id"] == "77" and data["job"]["title"] == "Engineer 77"
    assert [a["id"] for a in data["applications"]] == ["1001:77"]
    [row] = await rows(services, "SELECT attempts, done_at, last_status FROM delivery")
    assert (row.attempts, row.last_status) == (1, 200) and row.done_at is not None


async def test_failed_deliveries_are_retried_with_the_same_id_and_body(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    fake_ats.script.extend(
        [
            Step(match="/vendor", status=500),
            Step(match="/vendor", status=429, headers={"Retry-After": "1"}),
        ]
    )
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.created", {"id": "c-1"})
    await run_worker(fast_settings(settings))

    attempts = fake_ats.calls_to("/vendor", method="POST")
    assert [c.status for c in attempts] == [500, 429, 200]
    assert {c.headers["webhook-id"] for c in attempts} == {str(rid)}
    assert len({c.body for c in attempts}) == 1
    for call in attempts:
        assert verified(call.headers, call.body)["type"] == "candidate.created"
    assert attempts[2].started - attempts[1].finished >= 0.9  # Retry-After honoured
    [row] = await rows(services, "SELECT attempts, last_status FROM delivery")
    assert (row.attempts, row.last_status) == (3, 200)


async def test_a_destination_that_keeps_failing_is_dead_lettered_then_retried(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    fake_ats.script.extend(Step(match="/vendor", status=503) for _ in range(4))
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    fast = fast_settings(settings)
    await run_worker(fast)

    assert len(fake_ats.calls_to("/vendor", method="POST")) == 4  # schedule of 3 + first try
    [letter] = await dead_letters.list_letters(
        services.engine, dead_letters.Filters(stage="delivery")
    )
    assert (letter.record_id, letter.kind, letter.reason) == (
        rid,
        "pipeline",
        "delivery_exhausted",
    )
    assert letter.detail == "destination answered 503"
    # Enrichment itself succeeded: its record is processed, only the delivery gave up.
    [record] = await rows(services, "SELECT state FROM record")
    assert record.state == "processed"

    await dead_letters.retry(
        services.engine, services.queue, dead_letters.Filters(stage="delivery")
    )
    await run_worker(fast)
    assert len(fake_ats.deliveries()) == 1
    assert fake_ats.calls_to("/sr") and len(fake_ats.calls_to("/sr")) == 1


@pytest.mark.parametrize(
    ("status", "reason", "tries"),
    [(410, "destination_gone", 1), (401, "destination_refused", 4)],
)
async def test_a_retired_or_refusing_destination_is_the_tenants_configuration(
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    status: int,
    reason: str,
    tries: int,
) -> None:
    fake_ats.add_sr_candidate("c-1")
    fake_ats.script.extend(Step(match="/vendor", status=status) for _ in range(4))
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.calls_to("/vendor", method="POST")) == tries
    [letter] = await rows(services, "SELECT stage, kind, reason FROM dead_letter")
    assert (letter.stage, letter.kind, letter.reason) == ("delivery", "configuration", reason)


async def test_keldair_records_are_delivered_as_normalized_events(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    spec = TenantSpec(
        slug="acme",
        name="Acme",
        connection=[
            ConnectionSpec(source="keldair", secrets={"signing_secrets": [KELDAIR_SECRET]})
        ],
        destination=DestinationSpec(url=fake_ats.vendor_url, secret=VENDOR_SECRET),
    )
    await apply_tenants(TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher)
    body = orjson.dumps(keldair_event("evt_hired"))
    response = await client.post(KELDAIR_URL, content=body, headers=signed(body))
    assert response.status_code == 200
    await run_worker(fast_settings(settings))

    [delivery] = fake_ats.deliveries()
    event = verified(delivery.headers, delivery.body)
    assert delivery.headers["webhook-id"] == response.json()["record_id"]
    assert event["type"] == "candidate.hired"
    data = event["data"]
    assert isinstance(data, dict)
    assert data["source"] == "keldair"
    assert data["source_data"] == {"id": "ap_1", "firstName": "Ada", "jobId": "job_9"}
    # Nothing was fetched for KeldairHR.
    assert fake_ats.calls_to("/hrm") == [] and fake_ats.calls_to("/sr") == []


async def test_a_delivery_a_crash_left_unsent_is_republished_by_the_sweeper(
    services: Services, settings: Settings, fake_ats: FakeATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ats.add_sr_candidate("c-1")
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    ctx = {"services": services, "handlers": sources.handlers()}

    async def crashed(*args: object) -> None:
        """The worker dies once the processing has committed, before the job sends."""

    monkeypatch.setattr(jobs, "deliver_owed", crashed)
    assert await process_record(ctx, str(rid)) == "processed"
    monkeypatch.undo()
    assert await arq_queue(services.queue.redis) == [f"record:{rid}"]
    # Redis loses the job; the outboxes in PostgreSQL know the delivery is still owed. The
    # processing job claimed it with its transaction: the sweeper waits out that lease.
    await services.queue.redis.flushall()
    assert await sweep_outbox({"services": services}) == 0
    async with services.engine.begin() as db:
        await db.execute(text("UPDATE delivery SET available_at = now()"))
    assert await sweep_outbox({"services": services}) == 1
    assert await arq_queue(services.queue.redis) == [f"delivery:{rid}"]
    await run_worker(fast_settings(settings))
    assert len(fake_ats.deliveries()) == 1


async def test_destination_from_the_tenants_file(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_HOOK_SECRET", VENDOR_SECRET)
    path = tmp_path / "tenants.toml"
    path.write_text(
        """
[[tenant]]
slug = "acme"
name = "Acme"

[tenant.destination]
url = "https://hooks.vendor.example/hirehook"
secret = "env:ACME_HOOK_SECRET"
"""
    )
    await apply_tenants(read_tenants_file(path), engine=services.engine, cipher=services.cipher)
    [row] = await rows(services, "SELECT url, secret, enabled FROM destination")
    assert row.url == "https://hooks.vendor.example/hirehook" and row.enabled
    assert VENDOR_SECRET.encode() not in bytes(row.secret)
    assert services.cipher.decrypt_json(bytes(row.secret)) == {"secret": VENDOR_SECRET}


@pytest.mark.parametrize(
    "url", ["http://hooks.vendor.example/x", "ftp://127.0.0.1/x", "https:///nohost"]
)
def test_destinations_must_use_tls_outside_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        DestinationSpec(url=url, secret=VENDOR_SECRET)


async def test_a_malformed_destination_secret_is_refused_at_load(services: Services) -> None:
    spec = TenantSpec(
        slug="acme",
        name="Acme",
        destination=DestinationSpec(url="https://hooks.vendor.example/x", secret="not base64!"),
    )
    with pytest.raises(ValueError, match="whsec_"):
        await apply_tenants(
            TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher
        )
