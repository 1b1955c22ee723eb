"""The iCIMS API client against the loopback fake: tokens, errors, budget, cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from app.clients.base import ApiError, BudgetKey
from app.clients.icims import IcimsApiError, IcimsClient, TokenCache, parse_error
from app.schemas.icims_config import ApiSettings, ConfigError
from app.services import Services
from tests.support.fake_icims import FakeIcims, Fault
from tests.support.icims import API_CLIENT_ID, API_SECRET, JOB, PERSON

CUSTOMER = "1234"


class RecordingBudget:
    """A rate budget that grants everything and remembers what it was told."""

    def __init__(self) -> None:
        self.slots: list[BudgetKey] = []
        self.penalties: list[tuple[BudgetKey, float]] = []

    @asynccontextmanager
    async def slot(self, key: BudgetKey) -> AsyncIterator[None]:
        self.slots.append(key)
        yield

    async def penalize(self, key: BudgetKey, retry_after_s: float) -> None:
        self.penalties.append((key, retry_after_s))

    def observe(self, key: BudgetKey, remaining: int) -> None:
        del key, remaining


@pytest.fixture
def fake() -> Iterator[FakeIcims]:
    icims = FakeIcims().start()
    icims.add_client(API_CLIENT_ID, API_SECRET)
    icims.put(CUSTOMER, "people", "2468", dict(PERSON))
    icims.put(CUSTOMER, "jobs", "1209", dict(JOB))
    yield icims
    icims.stop()


def api(fake: FakeIcims, **overrides: str) -> ApiSettings:
    values = {
        "client_id": API_CLIENT_ID,
        "token_url": f"{fake.url}/oauth2/token",
        "base_url": fake.url,
        **overrides,
    }
    return ApiSettings.model_validate(values)


def make_client(
    services: Services, fake: FakeIcims, budget: RecordingBudget | None = None, **overrides: str
) -> IcimsClient:
    secret = overrides.pop("secret", API_SECRET)
    return IcimsClient(
        services.http,
        budget or RecordingBudget(),
        services.cache,
        tenant_id=7,
        api=api(fake, **overrides),
        client_secret=secret,
        tokens=TokenCache(),
    )


async def test_one_token_serves_many_concurrent_calls(services: Services, fake: FakeIcims) -> None:
    budget = RecordingBudget()
    client = make_client(services, fake, budget)
    people = await asyncio.gather(
        *(
            client.get_profile(CUSTOMER, "people", "2468", fields=[f"f{i}", "email"])
            for i in range(5)
        )
    )
    assert all(p == {"email": PERSON["email"]} for p in people)
    assert fake.token_requests == ["client_credentials"]
    assert len(fake.requests) == 5
    assert {str(k) for k in budget.slots} == {"icims:7:*"}


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_token_client_authentication_methods(
    services: Services, fake: FakeIcims, method: str
) -> None:
    client = make_client(services, fake, token_auth_method=method)
    assert (await client.get_profile(CUSTOMER, "jobs", "1209"))["jobtitle"] == "Analyst"


async def test_fetches_are_fresh_and_cached_per_fields_with_their_version(
    services: Services, fake: FakeIcims
) -> None:
    client = make_client(services, fake)
    full = await client.get_profile(CUSTOMER, "people", "2468")
    fake.put(CUSTOMER, "people", "2468", {**PERSON, "lastname": "Byron"})
    # Validation must see a profile the recruiter just fixed: no answer from the cache.
    again = await client.get_profile(CUSTOMER, "people", "2468")
    narrow = await client.get_profile(CUSTOMER, "people", "2468", fields=["lastname"])
    assert full == PERSON and again["lastname"] == "Byron" and narrow == {"lastname": "Byron"}
    assert fake.profile_requests() == [
        "/customers/1234/people/2468",
        "/customers/1234/people/2468",
        "/customers/1234/people/2468?fields=lastname",
    ]
    # Each field set is its own entry, stamped with when it was asked for, for the worker.
    key = services.cache.key(7, "icims", "people", client.cache_ref(CUSTOMER, "2468", None))
    entry = await services.cache.get(key)
    assert entry is not None and entry["doc"]["lastname"] == "Byron"
    assert abs(entry["v"] / 1_000_000 - time.time()) < 30
    # An older fetch never replaces a newer one.
    assert not await services.cache.put(key, {"lastname": "Old"}, entry["v"] - 1)
    kept = await services.cache.get(key)
    assert kept is not None and kept["doc"]["lastname"] == "Byron"


async def test_a_revoked_token_is_replaced_once(services: Services, fake: FakeIcims) -> None:
    client = make_client(services, fake)
    await client.get_profile(CUSTOMER, "people", "2468")
    fake.revoke_tokens()
    assert (await client.get_profile(CUSTOMER, "jobs", "1209"))["jobtitle"] == "Analyst"
    assert len(fake.token_requests) == 2


async def test_not_found_carries_icims_error_code_and_message(
    services: Services, fake: FakeIcims
) -> None:
    client = make_client(services, fake)
    with pytest.raises(IcimsApiError) as caught:
        await client.get_profile(CUSTOMER, "applicantworkflows", "999")
    error = caught.value
    assert (error.status, error.error_code, error.transient) == (404, 2, False)
    assert "Applicant workflow not found." in str(error)
    assert not error.config_problem


async def test_access_denied_is_a_configuration_problem(
    services: Services, fake: FakeIcims
) -> None:
    fake.fail("/customers/1234/people/2468", Fault(status=404, error_code=3, message="No access"))
    with pytest.raises(IcimsApiError) as caught:
        await make_client(services, fake).get_profile(CUSTOMER, "people", "2468")
    assert caught.value.config_problem and caught.value.error_code == 3


async def test_429_penalizes_the_shared_budget(services: Services, fake: FakeIcims) -> None:
    fake.fail("/customers/1234/jobs/1209", Fault(status=429, headers={"Retry-After": "7"}))
    budget = RecordingBudget()
    with pytest.raises(IcimsApiError) as caught:
        await make_client(services, fake, budget).get_profile(CUSTOMER, "jobs", "1209")
    assert caught.value.transient and caught.value.retry_after_s == 7
    assert [(str(k), s) for k, s in budget.penalties] == [("icims:7:*", 7.0)]


async def test_server_errors_are_transient(services: Services, fake: FakeIcims) -> None:
    fake.fail("/customers/1234/jobs/1209", Fault(status=500, times=1))
    client = make_client(services, fake)
    with pytest.raises(IcimsApiError) as caught:
        await client.get_profile(CUSTOMER, "jobs", "1209")
    assert caught.value.transient and caught.value.error_code == 0
    assert (await client.get_profile(CUSTOMER, "jobs", "1209"))["jobtitle"] == "Analyst"


async def test_slow_answer_times_out_within_the_given_budget(
    services: Services, fake: FakeIcims
) -> None:
    fake.fail("/customers/1234/jobs/1209", Fault(delay_s=3))
    client = make_client(services, fake)
    await client.token()
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError, match="timed out") as caught:
        await client.get_profile(CUSTOMER, "jobs", "1209", timeout_s=0.3)
    assert caught.value.transient
    # Well before the answer (3 s), however loaded the machine.
    assert asyncio.get_running_loop().time() - started < 2.5


async def test_token_endpoint_refusals_and_outages(services: Services, fake: FakeIcims) -> None:
    refused = make_client(services, fake, secret="wrong-secret")
    with pytest.raises(IcimsApiError, match="invalid_client") as caught:
        await refused.get_profile(CUSTOMER, "people", "2468")
    assert caught.value.config_problem and not caught.value.transient
    fake.token_fault = Fault(status=503)
    with pytest.raises(IcimsApiError) as outage:
        await make_client(services, fake).get_profile(CUSTOMER, "people", "2468")
    assert outage.value.transient


async def test_regional_hosts_and_escaped_ids(services: Services) -> None:
    us = ApiSettings(client_id="c", token_url="https://login.example/token")
    eu = ApiSettings(client_id="c", token_url="https://login.example/token", region="eu")
    assert us.api_base == "https://api.icims.com"
    assert eu.api_base == "https://api-eu.icims.com"
    client = IcimsClient(
        services.http,
        RecordingBudget(),
        services.cache,
        tenant_id=1,
        api=eu,
        client_secret="s",
    )
    # Ids come from event payloads: they must not be able to walk the API's path.
    assert client.url("12/34", "people", "../jobs/1") == (
        "https://api-eu.icims.com/customers/12%2F34/people/..%2Fjobs%2F1"
    )


def test_error_body_or_x_error_header_alone_is_understood() -> None:
    request = httpx.Request("GET", "https://api.icims.com/customers/1/jobs/2")
    body_only = httpx.Response(
        404, json={"errors": [{"errorMessage": "Job not found.", "errorCode": 2}]}, request=request
    )
    header_only = httpx.Response(404, headers={"X-Error": "3:Access denied."}, request=request)
    first, second = parse_error(body_only, "job"), parse_error(header_only, "job")
    assert (first.error_code, "Job not found." in str(first)) == (2, True)
    assert (second.error_code, second.config_problem) == (3, True)
    assert "Access denied." in str(second)


async def test_for_connection_needs_api_settings(services: Services) -> None:
    from tests.support.icims import add_icims

    await add_icims(services)
    connection = await services.connections.by_account("icims", "1234")
    assert connection is not None
    with pytest.raises(ConfigError, match=r"options\.api"):
        IcimsClient.for_connection(services.http, services.budget, services.cache, connection)
