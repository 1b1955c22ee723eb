"""Validate before commit against a fake iCIMS API on loopback (steps 3-6 of iCIMS's guide)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.clients.icims import DEFAULT_TOKENS
from app.main import create_app
from app.services import Services
from app.settings import Settings
from tests.conftest import make_settings, run_app
from tests.fake_icims import FakeIcims, Fault
from tests.test_icims_events import (
    CUSTOMER,
    add_icims,
    error_of,
    icims_options,
    icims_secrets,
    payload,
    records,
    send,
)
from tests.workers_support import rows, run_worker

API_CLIENT_ID, API_SECRET = "vendor-api-client", "vendor-api-secret-1-Us6hL3vT8mGa2rKp"
PERSON = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "email": "ada@example.com",
    "usssn": "",
}
JOB = {"jobtitle": "Analyst", "joblocation": {"id": 5, "value": "Berlin"}}
WORKFLOW = {"baseprofile": 1209, "associatedprofile": 2468, "rcf3001": {"id": "C1", "value": ""}}
STATUS_RULES = {
    "required": {"people": ["firstname", "lastname"]},
    "status_packages": {"C51218": "standard", "C51219": "executive"},
    "packages": {
        "standard": {"required": {"people": ["email"]}},
        "executive": {"required": {"people": ["email", "usssn"], "jobs": ["joblocation"]}},
    },
}
ASSESSMENT_RULES = {
    "required": {"people": ["email"], "jobs": ["jobtitle"]},
    "package_field": "rcf3001",
    "packages": {"standard": {}, "executive": {"required": {"people": ["usssn"]}}},
}


@pytest.fixture
def fake() -> Iterator[FakeIcims]:
    icims = FakeIcims().start()
    DEFAULT_TOKENS.clear()  # a token from an earlier fake on a reused port must not count
    icims.add_client(API_CLIENT_ID, API_SECRET)
    icims.put(CUSTOMER, "people", "2468", dict(PERSON))
    icims.put(CUSTOMER, "jobs", "1209", dict(JOB))
    icims.put(CUSTOMER, "applicantworkflows", "13", dict(WORKFLOW))
    yield icims
    icims.stop()


def validated_options(fake: FakeIcims, **overrides: Any) -> dict[str, Any]:
    options = icims_options(
        api={
            "client_id": API_CLIENT_ID,
            "token_url": f"{fake.url}/oauth2/token",
            "base_url": fake.url,
        },
        **overrides,
    )
    options["events"]["WorkFlowStatusChangeEvent"]["validation"] = STATUS_RULES
    options["events"]["AssessmentEvent"]["validation"] = ASSESSMENT_RULES
    return options


@pytest.fixture
async def acme(services: Services, fake: FakeIcims) -> Services:
    await add_icims(
        services,
        options=validated_options(fake),
        secrets=icims_secrets(api_client_secret=API_SECRET),
    )
    return services


def status_change(new_status: str = "C51218", **extra: Any) -> dict[str, Any]:
    return payload("WorkFlowStatusChangeEvent", newStatus=new_status, **extra)


async def test_valid_status_change_is_recorded_and_its_documents_reused_by_the_worker(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, settings: Settings
) -> None:
    response = await send(client, status_change())
    assert response.status_code == 200, response.text
    assert len(await records(acme)) == 1
    assert fake.token_requests == ["client_credentials"]
    # The rules' fields and the enrichment fields, in one fetch per profile the rules need.
    assert sorted(fake.profile_requests()) == [
        "/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle",
        "/customers/1234/people/2468?fields=email%2Cfirstname%2Clastname%2Cusssn",
    ]
    # The worker's enrichment reuses both documents and fetches only the workflow.
    await run_worker(settings)
    assert sorted(fake.profile_requests()) == [
        "/customers/1234/applicantworkflows/13?fields=associatedprofile%2Cbaseprofile%2Cstatus",
        "/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle",
        "/customers/1234/people/2468?fields=email%2Cfirstname%2Clastname%2Cusssn",
    ]
    candidate = await rows(acme, "SELECT first_name, email FROM candidate")
    assert [(c.first_name, c.email) for c in candidate] == [("Ada", "ada@example.com")]
    # A repeat is answered from the record before anything is fetched again.
    repeat = await send(client, status_change())
    assert repeat.headers["hirehook-duplicate"] == "true"
    assert len(fake.profile_requests()) == 3


async def test_missing_required_field_names_it_for_the_recruiter(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims
) -> None:
    response = await send(client, status_change("C51219"))
    assert response.status_code == 400
    error = error_of(response)
    assert error["userMessage"] == "Fill in {{people.usssn}}, then try again."
    assert (
        "executive" in error["debugErrorMessage"] and "people.usssn" in error["debugErrorMessage"]
    )
    assert await records(acme) == []
    # The recruiter fills it in and sets the status again: now it goes through.
    fake.put(CUSTOMER, "people", "2468", PERSON | {"usssn": "078-05-1120"})
    await acme.queue.redis.flushdb()  # a fresh read, as after the cache's short TTL
    assert (await send(client, status_change("C51219"))).status_code == 200
    assert len(await records(acme)) == 1


async def test_placeholder_profile_names_are_configurable(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    options = validated_options(fake, field_placeholder_profiles={"people": "person"})
    await add_icims(services, options=options, secrets=icims_secrets(api_client_secret=API_SECRET))
    response = await send(client, status_change("C51219"))
    assert error_of(response)["userMessage"] == "Fill in {{person.usssn}}, then try again."


async def test_unmapped_status_is_400_before_anything_is_fetched(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims
) -> None:
    response = await send(client, status_change("C77777"))
    assert response.status_code == 400
    error = error_of(response)
    assert "status you selected is not set up" in error["userMessage"]
    assert "C77777" in error["debugErrorMessage"]
    assert fake.requests == []
    assert await records(acme) == []


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("", "Select a package in {{applicantworkflows.rcf3001}}"),
        ("platinum", "is not offered"),
    ],
)
async def test_package_selection_is_checked_and_candidates_see_a_kind_message(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, package: str, expected: str
) -> None:
    fake.put(CUSTOMER, "applicantworkflows", "13", WORKFLOW | {"rcf3001": {"value": package}})
    response = await send(client, payload("AssessmentEvent"))
    assert response.status_code == 400
    error = error_of(response)
    # Application Complete is the candidate's click: the detail goes to the log, not to them.
    assert "recruiting team" in error["userMessage"]
    assert "rcf3001" in error["debugErrorMessage"]
    assert await records(acme) == []


async def test_application_complete_fetches_the_workflows_job_and_answers_303(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims
) -> None:
    fake.put(CUSTOMER, "applicantworkflows", "13", WORKFLOW | {"rcf3001": {"value": "standard"}})
    response = await send(client, payload("AssessmentEvent"))
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("https://assess.example.com/start/")
    paths = [p.split("?")[0] for p in fake.profile_requests()]
    assert paths.count("/customers/1234/jobs/1209") == 1
    assert "/customers/1234/applicantworkflows/13" in paths


@pytest.mark.parametrize(
    ("fault", "status", "debug"),
    [
        (Fault(status=503, message="Down for maintenance."), 503, "server error 503"),
        (Fault(status=500), 503, "server error 500"),
        (Fault(status=429, headers={"Retry-After": "30"}), 503, "rate limited"),
        (Fault(status=404, error_code=3, message="Access denied."), 500, "Access denied."),
        (Fault(status=404, message="Person not found."), 500, "iCIMS error 2"),
    ],
    ids=["503", "500", "429", "access-denied", "not-found"],
)
async def test_api_failures_map_to_the_vendor_standard(
    client: httpx.AsyncClient,
    acme: Services,
    fake: FakeIcims,
    fault: Fault,
    status: int,
    debug: str,
) -> None:
    fake.fail("/customers/1234/people/2468", fault)
    response = await send(client, status_change())
    assert response.status_code == status
    error = error_of(response)
    assert debug in error["debugErrorMessage"]
    if status == 503:
        assert response.headers["retry-after"] == "5"
        assert "temporarily unavailable" in error["userMessage"]
    else:
        assert "contact the vendor" in error["userMessage"]
    assert await records(acme) == []


async def test_unreachable_api_is_503(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims
) -> None:
    fake.stop()
    response = await send(client, status_change())
    assert response.status_code == 503
    assert "icims token" in error_of(response)["debugErrorMessage"]
    assert await records(acme) == []


async def test_refused_api_credentials_are_500_for_the_vendor(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    await add_icims(
        services,
        options=validated_options(fake),
        secrets=icims_secrets(api_client_secret="not-the-api-secret-Cq9wE4zR7yHn1dFb"),
    )
    response = await send(client, status_change())
    assert response.status_code == 500
    error = error_of(response)
    assert "invalid_client" in error["debugErrorMessage"]
    assert "not-the-api-secret-Cq9wE4zR7yHn1dFb" not in response.text
    assert await records(services) == []


async def test_slow_api_trips_the_request_budget_and_answers_503_in_time(
    services: Services, settings: Settings, fake: FakeIcims
) -> None:
    await add_icims(
        services,
        options={**validated_options(fake), "commit_reserve_s": 0.8},
        secrets=icims_secrets(api_client_secret=API_SECRET),
    )
    assert settings.database_url is not None and settings.redis_url is not None
    short = make_settings(
        str(settings.database_url), str(settings.redis_url), request_deadline_s=2.0
    )
    fake.fail("/customers/1234/jobs/1209", Fault(delay_s=5))
    async for client in run_app(create_app(short)):
        started = time.monotonic()
        response = await send(client, status_change())
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "budget" in error_of(response)["debugErrorMessage"]
    assert elapsed < 2.0, f"took {elapsed:.2f}s; the budget was 2 s"
    assert await records(services) == []
