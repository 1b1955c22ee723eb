"""iCIMS enrichment: events through the router, a real worker, the fake iCIMS API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
)
from app.clients.icims import DEFAULT_TOKENS
from app.platform.settings import Settings
from app.services import Services
from app.sources.icims import icims_sample
from tests.support.fake_ats import FakeATS
from tests.support.fake_icims import FakeIcims, Fault
from tests.support.icims import (
    API_CLIENT_ID,
    API_SECRET,
    CUSTOMER,
    JOB,
    PERSON,
    WORKFLOW,
    add_icims,
    age_records,
    api_options,
    icims_secrets,
    payload,
    send,
)
from tests.support.workers import VENDOR_SECRET, fast_settings, rows, run_worker


@pytest.fixture
def fake() -> Iterator[FakeIcims]:
    icims = FakeIcims().start()
    DEFAULT_TOKENS.clear()
    icims.add_client(API_CLIENT_ID, API_SECRET)
    icims.put(CUSTOMER, "people", "2468", dict(PERSON))
    icims.put(CUSTOMER, "jobs", "1209", {**JOB, "folder": {"id": "C1", "value": "Open"}})
    icims.put(CUSTOMER, "applicantworkflows", "13", {**WORKFLOW, "status": {"value": "Offer"}})
    yield icims
    icims.stop()


@pytest.fixture
async def acme(services: Services, fake: FakeIcims) -> Services:
    await add_icims(
        services, options=api_options(fake), secrets=icims_secrets(api_client_secret=API_SECRET)
    )
    return services


async def test_application_complete_fetches_workflow_person_and_job(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    response = await send(client, payload("AssessmentEvent"))
    assert response.status_code == 303
    await run_worker(settings)
    # The workflow names the job (baseprofile); one fetch per profile, enrichment fields only.
    assert sorted(fake.profile_requests()) == [
        "/customers/1234/applicantworkflows/13?fields=associatedprofile%2Cbaseprofile%2Cstatus",
        "/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle",
        "/customers/1234/people/2468?fields=email%2Cfirstname%2Clastname",
    ]
    [candidate] = await rows(acme, "SELECT * FROM candidate")
    assert (candidate.external_id, candidate.first_name, candidate.email) == (
        "2468",
        "Ada",
        "ada@example.com",
    )
    [job] = await rows(acme, "SELECT * FROM job")
    assert (job.external_id, job.title, job.location) == ("1209", "Analyst", "Berlin")
    [application] = await rows(acme, "SELECT * FROM application")
    assert (
        application.external_id,
        application.candidate_external_id,
        application.job_external_id,
        application.status,
    ) == ("13", "2468", "1209", "Offer")
    [record] = await rows(acme, "SELECT state FROM record")
    assert record.state == "processed"


async def test_job_posting_fetches_the_job(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    assert (await send(client, payload("JobPostToWebEvent"))).status_code == 303
    await run_worker(settings)
    assert fake.profile_requests() == ["/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle"]
    [job] = await rows(acme, "SELECT external_id, title FROM job")
    assert (job.external_id, job.title) == ("1209", "Analyst")


async def test_duplicate_storm_costs_one_fetch_per_profile(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    # Distinct events (new workflow ids) naming the same job inside the coalescing window.
    for system_id in ("13", "14", "15", "16"):
        fake.put(CUSTOMER, "applicantworkflows", system_id, {**WORKFLOW, "status": "New"})
        body = payload("WorkFlowStatusChangeEvent", systemId=system_id)
        assert (await send(client, body)).status_code == 200
    await run_worker(settings)
    requests = fake.profile_requests()
    assert sum("/jobs/1209" in r for r in requests) == 1
    assert sum("/people/2468" in r for r in requests) == 1
    assert sum("/applicantworkflows/" in r for r in requests) == 4
    assert len(await rows(acme, "SELECT * FROM application")) == 4


async def test_without_api_credentials_the_event_is_processed_without_fetching(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims, settings: Settings
) -> None:
    await add_icims(services)
    assert (await send(client, payload("JobUnpostToWebEvent"))).status_code == 200
    await run_worker(settings)
    assert fake.requests == []
    [record] = await rows(services, "SELECT state FROM record")
    assert record.state == "processed"
    assert await rows(services, "SELECT * FROM job") == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(status=404, error_code=3, message="Access denied."), "permission_denied"),
        (Fault(status=404, error_code=2, message="Job not found."), "not_found"),
    ],
)
async def test_refusals_are_dead_lettered_with_their_reason(
    client: httpx.AsyncClient,
    acme: Services,
    fake: FakeIcims,
    settings: Settings,
    fault: Fault,
    reason: str,
) -> None:
    fake.fail("/customers/1234/jobs/1209", fault)
    assert (await send(client, payload("JobPostToWebEvent"))).status_code == 303
    await run_worker(fast_settings(settings))
    [letter] = await rows(acme, "SELECT kind, reason, stage FROM dead_letter")
    expected_kind = "configuration" if reason == "permission_denied" else "pipeline"
    assert (letter.kind, letter.reason, letter.stage) == (expected_kind, reason, "enrichment")


async def test_server_errors_are_retried_until_the_api_answers(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    fake.fail("/customers/1234/jobs/1209", Fault(status=503, times=2))
    assert (await send(client, payload("JobPostToWebEvent"))).status_code == 303
    await run_worker(fast_settings(settings))
    assert len(fake.profile_requests()) == 3
    assert await rows(acme, "SELECT * FROM dead_letter") == []
    [job] = await rows(acme, "SELECT title FROM job")
    assert job.title == "Analyst"


async def _with_destination(services: Services, fake: FakeIcims, fake_ats: FakeATS) -> None:
    """The iCIMS connection of ``acme``, delivering to the fake vendor endpoint."""
    spec = TenantSpec(
        slug="acme",
        name="Acme",
        connection=[
            ConnectionSpec(
                source="icims",
                account=CUSTOMER,
                options=api_options(fake),
                secrets=icims_secrets(api_client_secret=API_SECRET),
            )
        ],
        destination=DestinationSpec(url=fake_ats.vendor_url, secret=VENDOR_SECRET),
    )
    await apply_tenants(TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher)
    services.connections.invalidate()


def _delivered(fake_ats: FakeATS) -> dict[str, dict[str, Any]]:
    """The delivered events by record id."""
    events = [orjson.loads(call.body) for call in fake_ats.deliveries()]
    return {event["data"]["record_id"]: event for event in events}


async def test_post_unpost_post_is_delivered_as_posted_unposted_posted(
    client: httpx.AsyncClient,
    services: Services,
    fake: FakeIcims,
    fake_ats: FakeATS,
    settings: Settings,
) -> None:
    await _with_destination(services, fake, fake_ats)
    answers = []
    for event_type in ("JobPostToWebEvent", "JobUnpostToWebEvent", "JobPostToWebEvent"):
        answers.append(await send(client, icims_sample(event_type)))
        await age_records(services, 1)
    await run_worker(fast_settings(settings))
    delivered = _delivered(fake_ats)
    ids = [a.headers["hirehook-record-id"] for a in answers]
    assert len(set(ids)) == len(delivered) == 3
    assert [delivered[i]["type"] for i in ids] == ["job.posted", "job.unposted", "job.posted"]
    assert all(delivered[i]["data"]["job"]["id"] == "1209" for i in ids)


async def test_each_job_edit_is_fetched_and_delivered_as_a_job_update(
    client: httpx.AsyncClient,
    services: Services,
    fake: FakeIcims,
    fake_ats: FakeATS,
    settings: Settings,
) -> None:
    await _with_destination(services, fake, fake_ats)
    # No coalescing: the second edit must be read after it was made, never from the first.
    fresh = fast_settings(settings, coalesce_window_s=0)
    first = await send(client, icims_sample("ViewJobWebPostEvent"))
    await run_worker(fresh)
    # Another recruiter changes the title and edits the posting again.
    fake.put(CUSTOMER, "jobs", "1209", {**JOB, "jobtitle": "Senior Analyst"})
    second = await send(client, {**icims_sample("ViewJobWebPostEvent"), "userId": "122"})
    assert first.status_code == second.status_code == 303
    assert "hirehook-duplicate" not in second.headers
    await run_worker(fresh)
    delivered = _delivered(fake_ats)
    one, two = (delivered[a.headers["hirehook-record-id"]] for a in (first, second))
    assert one["type"] == two["type"] == "job.updated"
    assert (one["data"]["job"]["title"], two["data"]["job"]["title"]) == (
        "Analyst",
        "Senior Analyst",
    )
    assert sum("/jobs/1209" in r for r in fake.profile_requests()) == 2


async def test_an_onboard_portal_task_fetches_the_new_hire_and_the_job(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    body = icims_sample("OnboardPortalTaskEvent")
    assert any(link["rel"] == "job" for link in body["links"])
    assert (await send(client, body)).status_code == 303
    await run_worker(settings)
    assert sorted(fake.profile_requests()) == [
        "/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle",
        "/customers/1234/people/2468?fields=email%2Cfirstname%2Clastname",
    ]
    [job] = await rows(acme, "SELECT external_id, title FROM job")
    assert (job.external_id, job.title) == ("1209", "Analyst")
    [candidate] = await rows(acme, "SELECT external_id FROM candidate")
    assert candidate.external_id == "2468"
