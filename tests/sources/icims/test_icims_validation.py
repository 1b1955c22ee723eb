"""Validate before commit against a fake iCIMS API on loopback (steps 3-6 of iCIMS's guide)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.clients.icims import DEFAULT_TOKENS
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import make_settings, run_app
from tests.support.fake_icims import FakeIcims, Fault
from tests.support.icims import (
    API_CLIENT_ID,
    API_SECRET,
    CUSTOMER,
    JOB,
    PERSON,
    WORKFLOW,
    add_icims,
    error_of,
    icims_options,
    icims_secrets,
    outbox_count,
    payload,
    records,
    send,
)
from tests.support.workers import rows, run_worker

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
async def test_application_complete_is_failsafe_by_default(
    client: httpx.AsyncClient, acme: Services, fake: FakeIcims, package: str, expected: str
) -> None:
    fake.put(CUSTOMER, "applicantworkflows", "13", WORKFLOW | {"rcf3001": {"value": package}})
    response = await send(client, payload("AssessmentEvent"))
    # The candidate is sent on to the assessment; the failure travels with the record.
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("https://assess.example.com/start/")
    (record,) = await records(acme)
    note = record.payload["_hirehook"]["validation"]
    assert note["outcome"] == "invalid" and note["status"] == 400
    assert expected in note["userMessage"]
    assert "rcf3001" in note["debugErrorMessage"]
    assert await outbox_count(acme) == 1


@pytest.mark.parametrize("package", ["", "platinum"])
async def test_application_complete_refuses_only_where_the_connection_says_so(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims, package: str
) -> None:
    options = validated_options(fake)
    options["events"]["AssessmentEvent"]["validation"] = ASSESSMENT_RULES | {"on_invalid": "refuse"}
    await add_icims(services, options=options, secrets=icims_secrets(api_client_secret=API_SECRET))
    fake.put(CUSTOMER, "applicantworkflows", "13", WORKFLOW | {"rcf3001": {"value": package}})
    response = await send(client, payload("AssessmentEvent"))
    assert response.status_code == 400
    error = error_of(response)
    # Application Complete is the candidate's click: the detail goes to the log, not to them.
    assert "recruiting team" in error["userMessage"]
    assert "{{" not in error["userMessage"]
    assert "rcf3001" in error["debugErrorMessage"]
    assert await records(services) == []


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
    # The budget is 2 s; generous for a loaded machine, and still short of the API's answer (5 s).
    assert elapsed < 4.0, f"took {elapsed:.2f}s; the budget was 2 s"
    assert await records(services) == []


# --- Job Posting, Job Edit, Job Unposting (recruiters) and Onboard Portal Task (new hires) ----

JOB_EVENTS = ("JobPostToWebEvent", "ViewJobWebPostEvent", "JobUnpostToWebEvent")
JOB_RULES: dict[str, Any] = {"required": {"jobs": ["jobtitle", "rcf2001"]}}
NEW_HIRE_RULES: dict[str, Any] = {"required": {"people": ["email", "usssn"]}}
ACCEPTED = {
    "JobPostToWebEvent": 303,
    "ViewJobWebPostEvent": 303,
    "JobUnpostToWebEvent": 200,
    "OnboardPortalTaskEvent": 303,
    "AssessmentEvent": 303,
}
# Which profile each event's rules read, so a fault there trips its validation.
CHECKED_PATHS = {
    "JobPostToWebEvent": "/customers/1234/jobs/1209",
    "ViewJobWebPostEvent": "/customers/1234/jobs/1209",
    "JobUnpostToWebEvent": "/customers/1234/jobs/1209",
    "OnboardPortalTaskEvent": "/customers/1234/people/2468",
    "AssessmentEvent": "/customers/1234/people/2468",
}


def strict_options(fake: FakeIcims, **rules: Any) -> dict[str, Any]:
    """Validation on for all six events; ``rules`` are added to every event's rules."""
    options = validated_options(fake)
    for event_type in JOB_EVENTS:
        options["events"][event_type]["validation"] = JOB_RULES | rules
    options["events"]["OnboardPortalTaskEvent"]["validation"] = NEW_HIRE_RULES | rules
    options["events"]["AssessmentEvent"]["validation"] = ASSESSMENT_RULES | rules
    return options


async def add_strict(services: Services, fake: FakeIcims, **rules: Any) -> None:
    await add_icims(
        services,
        options=strict_options(fake, **rules),
        secrets=icims_secrets(api_client_secret=API_SECRET),
    )


async def nothing_recorded(services: Services) -> bool:
    return await records(services) == [] and await outbox_count(services) == 0


@pytest.mark.parametrize("event_type", JOB_EVENTS)
async def test_job_event_names_the_missing_job_field_and_records_after_the_fix(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims, event_type: str
) -> None:
    await add_strict(services, fake)
    response = await send(client, payload(event_type))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["userMessage"] == "Fill in {{jobs.rcf2001}}, then try again."
    assert "jobs.rcf2001" in error["debugErrorMessage"]
    assert await nothing_recorded(services)
    # The recruiter fills the field in and presses the button again.
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf2001": "Full time"})
    retry = await send(client, payload(event_type))
    assert retry.status_code == ACCEPTED[event_type], retry.text
    assert "hirehook-duplicate" not in retry.headers
    (record,) = await records(services)
    assert "_hirehook" not in record.payload
    assert await outbox_count(services) == 1
    # Fetched fresh each time, with the rules' fields added to the enrichment fields.
    assert fake.profile_requests() == 2 * [
        "/customers/1234/jobs/1209?fields=joblocation%2Cjobtitle%2Crcf2001"
    ]


async def test_job_posting_checks_the_package_picked_in_a_job_field(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    options = validated_options(fake)
    options["events"]["JobPostToWebEvent"]["validation"] = {
        "package_field": "rcf3002",
        "packages": {"basic": {}, "premium": {"required": {"jobs": ["rcf2001"]}}},
    }
    await add_icims(services, options=options, secrets=icims_secrets(api_client_secret=API_SECRET))
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf3002": {"id": "P9", "value": "gold"}})
    response = await send(client, payload("JobPostToWebEvent"))
    assert response.status_code == 400
    assert error_of(response)["userMessage"] == (
        "The package selected in {{jobs.rcf3002}} is not offered by this integration. "
        "Select one of: basic, premium."
    )
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf3002": {"id": "P2", "value": "premium"}})
    response = await send(client, payload("JobPostToWebEvent"))
    assert error_of(response)["userMessage"] == "Fill in {{jobs.rcf2001}}, then try again."
    assert await nothing_recorded(services)
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf3002": "premium", "rcf2001": "Full time"})
    assert (await send(client, payload("JobPostToWebEvent"))).status_code == 303
    assert len(await records(services)) == 1


async def test_onboard_task_never_asks_the_new_hire_to_fix_it(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    await add_strict(services, fake)
    response = await send(client, payload("OnboardPortalTaskEvent"))
    # Nobody in front of the screen can fill in the profile: a system error, for support.
    assert response.status_code == 500, response.text
    error = error_of(response)
    assert "HR or onboarding" in error["userMessage"]
    assert "{{" not in error["userMessage"] and "Fill in" not in error["userMessage"]
    reference = error["debugErrorMessage"].rsplit("[ref ", 1)[1].rstrip("]")
    assert f"Reference: {reference}." in error["userMessage"]
    assert "people.usssn" in error["debugErrorMessage"]
    assert await nothing_recorded(services)
    # HR completes the new hire's profile; the new hire opens the task again.
    fake.put(CUSTOMER, "people", "2468", PERSON | {"usssn": "078-05-1120"})
    retry = await send(client, payload("OnboardPortalTaskEvent"))
    assert retry.status_code == 303, retry.text
    assert retry.headers["location"].startswith("https://onboard.example.com/tasks/")
    assert len(await records(services)) == 1
    assert await outbox_count(services) == 1


async def test_onboard_task_can_check_the_job_its_link_names(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    options = validated_options(fake)
    options["events"]["OnboardPortalTaskEvent"]["validation"] = {"required": {"jobs": ["rcf2001"]}}
    await add_icims(services, options=options, secrets=icims_secrets(api_client_secret=API_SECRET))
    task = payload("OnboardPortalTaskEvent")
    task.setdefault("links", []).append(
        {"rel": "job", "url": f"https://api.icims.com/customers/{CUSTOMER}/jobs/1209"}
    )
    response = await send(client, task)
    assert response.status_code == 500, response.text
    assert "jobs.rcf2001" in error_of(response)["debugErrorMessage"]
    assert await nothing_recorded(services)
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf2001": "Full time"})
    retry = await send(client, task)
    assert retry.status_code == 303, retry.text
    assert len(await records(services)) == 1


async def test_onboard_task_can_be_accepted_despite_a_failed_rule(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    await add_strict(services, fake, on_invalid="accept")
    response = await send(client, payload("OnboardPortalTaskEvent"))
    assert response.status_code == 303, response.text
    (record,) = await records(services)
    note = record.payload["_hirehook"]["validation"]
    assert note["outcome"] == "invalid"
    assert note["userMessage"] == "Fill in {{people.usssn}}, then try again."


TEMPORARY = {
    "JobPostToWebEvent": "temporarily unavailable",
    "ViewJobWebPostEvent": "temporarily unavailable",
    "JobUnpostToWebEvent": "temporarily unavailable",
    "OnboardPortalTaskEvent": "This task is briefly unavailable",
}


@pytest.mark.parametrize("event_type", [*JOB_EVENTS, "OnboardPortalTaskEvent"])
async def test_slow_api_is_answered_within_the_validation_budget(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims, event_type: str
) -> None:
    await add_strict(services, fake, timeout_s=1.0)
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf2001": "Full time"})
    fake.put(CUSTOMER, "people", "2468", PERSON | {"usssn": "078-05-1120"})
    # Far longer than the validation budget (1 s) and than iCIMS's 30 s.
    fake.fail(CHECKED_PATHS[event_type], Fault(delay_s=60, times=1))
    started = time.monotonic()
    response = await send(client, payload(event_type))
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    error = error_of(response)
    assert TEMPORARY[event_type] in error["userMessage"]
    assert "validation budget (1.0 s)" in error["debugErrorMessage"]
    # Generous for a loaded machine, yet far below the fake's delay and iCIMS's 30 s.
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert await nothing_recorded(services)
    # The API is quick again: the retry is checked and recorded.
    retry = await send(client, payload(event_type))
    assert retry.status_code == ACCEPTED[event_type], retry.text
    assert len(await records(services)) == 1
    assert await outbox_count(services) == 1


@pytest.mark.parametrize("event_type", [*JOB_EVENTS, "OnboardPortalTaskEvent"])
@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(status=502, message="Bad gateway."), 503),
        (Fault(status=500), 503),
        (Fault(status=404, error_code=3, message="Access denied."), 500),
    ],
    ids=["502", "500", "access-denied"],
)
async def test_failing_api_answers_by_who_can_act(
    client: httpx.AsyncClient,
    services: Services,
    fake: FakeIcims,
    event_type: str,
    fault: Fault,
    status: int,
) -> None:
    await add_strict(services, fake)
    fake.put(CUSTOMER, "jobs", "1209", JOB | {"rcf2001": "Full time"})
    fake.put(CUSTOMER, "people", "2468", PERSON | {"usssn": "078-05-1120"})
    fake.fail(CHECKED_PATHS[event_type], fault)
    response = await send(client, payload(event_type))
    assert response.status_code == status, response.text
    error = error_of(response)
    if event_type == "OnboardPortalTaskEvent":
        assert "HR or onboarding" in error["userMessage"] or "briefly" in error["userMessage"]
    elif status == 503:
        assert "temporarily unavailable" in error["userMessage"]
    else:
        assert "contact the vendor" in error["userMessage"]
    assert "{{" not in error["userMessage"]
    assert await nothing_recorded(services)
    # iCIMS's API recovers (or its administrator grants access): the retry is recorded.
    del fake.faults[CHECKED_PATHS[event_type]]
    retry = await send(client, payload(event_type))
    assert retry.status_code == ACCEPTED[event_type], retry.text
    assert len(await records(services)) == 1
    assert await outbox_count(services) == 1


async def test_application_complete_is_recorded_when_the_api_is_slow(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    await add_strict(services, fake, timeout_s=1.0)
    fake.put(CUSTOMER, "applicantworkflows", "13", WORKFLOW | {"rcf3001": {"value": "standard"}})
    fake.fail(CHECKED_PATHS["AssessmentEvent"], Fault(delay_s=60))
    started = time.monotonic()
    response = await send(client, payload("AssessmentEvent"))
    elapsed = time.monotonic() - started
    # The candidate is not held up by the customer's API: recorded, sent on, checked later.
    assert response.status_code == 303, response.text
    assert elapsed < 15, f"took {elapsed:.1f} s"
    (record,) = await records(services)
    note = record.payload["_hirehook"]["validation"]
    assert note["outcome"] == "unchecked" and note["status"] == 503
    assert "userMessage" not in note
    assert await outbox_count(services) == 1


async def test_application_complete_may_refuse_when_the_api_fails(
    client: httpx.AsyncClient, services: Services, fake: FakeIcims
) -> None:
    await add_strict(services, fake, on_api_error="refuse")
    fake.fail(CHECKED_PATHS["AssessmentEvent"], Fault(status=503))
    response = await send(client, payload("AssessmentEvent"))
    assert response.status_code == 503
    assert "This step is briefly unavailable" in error_of(response)["userMessage"]
    assert await nothing_recorded(services)
