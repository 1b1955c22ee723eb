"""iCIMS Integration Events end to end: routing by customerId, three auth methods, answers.

Requests are signed here by an HMAC implementation written from docs/ats/icims.md alone,
not by the production signer.
"""

from __future__ import annotations

import asyncio
import gzip
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from sqlalchemy import text

from app import sources
from app.intake.link_tokens import record_from_token
from app.main import create_app
from app.platform.settings import Settings
from app.routers.icims.auth import link_keys
from app.schemas.icims import WorkFlowStatusChangeEvent, dedupe_content, thread
from app.schemas.keys import digest
from app.services import Services
from app.sources.icims import icims_link_header, icims_sample
from app.workers.jobs import process_record
from tests.support.app import (
    arq_queue,
    logged_events,
    run_app,
)
from tests.support.icims import (
    ALL_TYPES,
    AUTHS,
    BASIC_PASSWORD,
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMER,
    LINKS,
    SECRET_VALUES,
    URL,
    add_icims,
    age_records,
    basic_header,
    error_of,
    fetch_token,
    icims_hmac_headers,
    icims_options,
    icims_secrets,
    outbox_count,
    payload,
    records,
    send,
)
from tests.support.proxy import FaultProxy, via_proxy


@pytest.fixture
async def acme(services: Services) -> Services:
    await add_icims(services)
    return services


@pytest.mark.parametrize("gzip_body", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("event_type", ALL_TYPES)
async def test_each_event_type_in_each_auth_method(
    client: httpx.AsyncClient, acme: Services, event_type: str, auth: str, gzip_body: bool
) -> None:
    body = payload(event_type)
    response = await send(client, body, auth=auth, gzip_body=gzip_body)
    if event_type in LINKS:
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith(LINKS[event_type].split("{")[0])
        assert response.json()["link"] == location
    else:
        assert response.status_code == 200, response.text
        assert "location" not in response.headers
    [row] = await records(acme)
    assert str(row.id) == response.headers["hirehook-record-id"] == response.json()["recordId"]
    assert (row.source, row.event_type, row.known) == ("icims", event_type, True)
    assert row.payload == body
    assert bytes(row.raw_body) == orjson.dumps(body)
    assert "authorization" not in row.headers
    assert await outbox_count(acme) == 1
    assert await arq_queue(acme.queue.redis) == [f"record:{row.id}"]


@pytest.mark.parametrize("event_type", sorted(LINKS))
async def test_duplicate_gets_the_very_same_link(
    client: httpx.AsyncClient, acme: Services, event_type: str
) -> None:
    first = await send(client, payload(event_type), auth="hmac")
    # iCIMS retried with another delivery (and it could as well be another auth method).
    second = await send(client, payload(event_type), auth="basic", gzip_body=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert first.content == second.content
    assert "hirehook-duplicate" not in first.headers
    assert second.headers["hirehook-duplicate"] == "true"
    assert len(await records(acme)) == 1
    assert await outbox_count(acme) == 1


async def test_link_carries_an_unforgeable_per_record_token(
    client: httpx.AsyncClient, acme: Services, settings: Settings
) -> None:
    first = await send(client, payload("AssessmentEvent"))
    other = await send(client, payload("AssessmentEvent", systemId="14"))
    tokens = [urlsplit(r.headers["location"]).path.rsplit("/", 1)[1] for r in (first, other)]
    assert tokens[0] != tokens[1]
    keys = link_keys(settings)
    assert str(record_from_token(tokens[0], keys)) == first.headers["hirehook-record-id"]
    assert str(record_from_token(tokens[1], keys)) == other.headers["hirehook-record-id"]
    forged = tokens[0][:-2] + ("AA" if not tokens[0].endswith("AA") else "BB")
    assert record_from_token(forged, keys) is None


async def test_link_values_are_url_encoded(client: httpx.AsyncClient, acme: Services) -> None:
    body = payload("AssessmentEvent")
    location = (await send(client, body)).headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["return"] == [body["returnUrl"]]
    assert "%26lang%3Den" in location


async def test_unknown_fields_are_ignored_and_kept(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = payload(
        "WorkFlowStatusChangeEvent",
        brandNewField={"nested": [1, 2, {"x": None}]},
        anotherOne="value",
    )
    response = await send(client, body)
    assert response.status_code == 200
    [row] = await records(acme)
    assert row.payload["brandNewField"] == {"nested": [1, 2, {"x": None}]}


async def test_numeric_ids_are_accepted_as_strings(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = payload("JobUnpostToWebEvent", customerId=1234, userId=121, systemId=1209)
    assert (await send(client, body)).status_code == 200


async def test_link_header_and_links_array_are_parsed_and_stored(
    client: httpx.AsyncClient, acme: Services
) -> None:
    # The header exactly as iCIMS's Job Edit example shows it: no brackets, trailing comma.
    link = (
        'http://providertest.icims.com/customers/1234/jobs/1209;rel="job";title="Job Profile",'
        'http://providertest.icims.com/customers/1234/people/121;rel="user";title="Posting User",'
    )
    body = payload("ViewJobWebPostEvent")
    body["links"] = [
        {"rel": "user", "title": "Posting User", "url": "https://api.icims.com/x/people/121"},
        "garbage",
        {"rel": "broken"},
    ]
    response = await send(client, body, extra_headers={"link": link})
    assert response.status_code == 303
    [row] = await records(acme)
    assert row.headers["link"] == link
    assert row.payload["_hirehook"]["linkHeader"] == [
        {
            "rel": "job",
            "title": "Job Profile",
            "url": "http://providertest.icims.com/customers/1234/jobs/1209",
        },
        {
            "rel": "user",
            "title": "Posting User",
            "url": "http://providertest.icims.com/customers/1234/people/121",
        },
    ]
    assert row.payload["links"] == body["links"]


async def test_one_url_serves_two_customers_without_cross_talk(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_icims(services)
    globex_secrets = icims_secrets(
        basic_username="icims-globex",
        basic_password="basic-password-globex-Hs5wQ2mC9rLd7",
        hmac_secrets=["hmac-secret-globex-Nf3kY8tB6vGx1qZe"],
        oauth_client_secrets=["oauth-secret-globex-Rj9pD4hW7cMs2nUy"],
    )
    globex_options = icims_options(oauth_client_id="globex-icims-client", hmac_user="icims-globex")
    globex_options["events"]["AssessmentEvent"]["link_template"] = (
        "https://globex.example.com/a/{token}"
    )
    await add_icims(
        services, tenant="globex", customer="5678", options=globex_options, secrets=globex_secrets
    )
    acme_event = payload("AssessmentEvent")
    globex_event = payload("AssessmentEvent", customer="5678")

    ok_acme = await send(client, acme_event, auth="basic")
    assert ok_acme.headers["location"].startswith("https://assess.example.com/")
    globex_basic = basic_header("icims-globex", "basic-password-globex-Hs5wQ2mC9rLd7")
    ok_globex = await send(client, globex_event, auth="none", extra_headers=globex_basic)
    assert ok_globex.headers["location"].startswith("https://globex.example.com/a/")

    # Acme's credentials, whichever method, do not speak for Globex.
    acme_token = await fetch_token(client)
    for auth in ("basic", "hmac"):
        assert (await send(client, globex_event, auth=auth)).status_code == 401
    assert (await send(client, globex_event, auth="oauth", token=acme_token)).status_code == 401
    globex_token = await fetch_token(
        client, "globex-icims-client", "oauth-secret-globex-Rj9pD4hW7cMs2nUy"
    )
    assert (await send(client, acme_event, auth="oauth", token=globex_token)).status_code == 401

    rows = await records(services)
    assert len(rows) == 2
    async with services.engine.connect() as conn:
        owners = (
            await conn.execute(
                text(
                    "SELECT t.slug, r.payload->>'customerId' FROM record r "
                    "JOIN tenant t ON t.id = r.tenant_id ORDER BY 1"
                )
            )
        ).all()
    assert [tuple(o) for o in owners] == [("acme", "1234"), ("globex", "5678")]


@pytest.mark.parametrize("auth", AUTHS)
async def test_unknown_customer_and_wrong_credentials_get_the_same_401(
    client: httpx.AsyncClient, services: Services, auth: str
) -> None:
    await add_icims(services)
    token = await fetch_token(client)
    unknown = await send(
        client, payload("JobPostToWebEvent", customer="9999"), auth=auth, token=token
    )
    await add_icims(
        services,
        secrets=icims_secrets(
            basic_password="other-password-Ke2xV7bQ5zLt9gFr3w",
            hmac_secrets=["other-hmac-secret-Pw8nJ3dS6kYc1hTm"],
            oauth_client_secrets=["other-oauth-secret-Gv4rZ9qF2bNx7eLk"],
        ),
    )
    wrong = await send(client, payload("JobPostToWebEvent"), auth=auth, token=token)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.content == wrong.content
    error = error_of(wrong)
    assert "Event Notifications" in error["userMessage"]
    assert not any(secret in wrong.text for secret in SECRET_VALUES)
    assert await records(services) == []


@pytest.mark.parametrize(
    ("event_type", "who"),
    [("AssessmentEvent", "recruiting team"), ("OnboardPortalTaskEvent", "HR or onboarding")],
)
async def test_candidates_and_new_hires_are_never_asked_to_fix_configuration(
    client: httpx.AsyncClient, acme: Services, event_type: str, who: str
) -> None:
    body = payload(event_type)
    refused = await send(
        client, body, auth="none", extra_headers=basic_header(password="wrong-password")
    )
    assert refused.status_code == 401
    # A notification iCIMS built wrong is nothing they can fix: iCIMS's standard calls that a
    # 500, with a reference for whoever supports them, where a recruiter gets the user's 400.
    malformed = await send(client, {k: v for k, v in body.items() if k != "systemId"})
    assert malformed.status_code == 500
    for response in (refused, malformed):
        message = error_of(response)["userMessage"]
        assert who in message
        for word in ("administrator", "credential", "configur", "Event Notifications", "{{"):
            assert word not in message
    assert "Reference:" in error_of(malformed)["userMessage"]
    assert "systemId" in error_of(malformed)["debugErrorMessage"]
    job = payload("JobPostToWebEvent")
    recruiter = await send(client, {k: v for k, v in job.items() if k != "systemId"})
    assert recruiter.status_code == 400
    assert await records(acme) == []


@pytest.mark.parametrize(
    ("event_type", "debug_part"),
    [
        ("JobUnpostToWebEvent", "JobUnpostToWebEvent"),
        ("RemoteLoginEvent", "RemoteLoginEvent"),
    ],
)
async def test_event_type_not_set_up_is_a_400_that_says_so(
    client: httpx.AsyncClient, services: Services, event_type: str, debug_part: str
) -> None:
    options = icims_options()
    del options["events"]["JobUnpostToWebEvent"]
    await add_icims(services, options=options)
    response = await send(client, payload(event_type))
    assert response.status_code == 400
    error = error_of(response)
    assert "not set up" in error["userMessage"] and event_type in error["userMessage"]
    assert debug_part in error["debugErrorMessage"]
    assert await records(services) == []


@pytest.mark.parametrize(
    ("content", "headers", "debug"),
    [
        (b'{"customerId": "1234", ', {}, "not valid UTF-8 JSON"),
        (b"[1, 2]", {}, "JSON object"),
        (b'{"eventType": "JobUnpostToWebEvent", "systemId": "1"}', {}, "customerId"),
        (
            orjson.dumps(
                {k: v for k, v in payload("WorkFlowStatusChangeEvent").items() if k != "newStatus"}
            ),
            {},
            "newStatus",
        ),
        (
            gzip.compress(b'{"customerId":"1234","x":"' + b"0" * (20 * 1024 * 1024) + b'"}'),
            {"content-encoding": "gzip"},
            "decompressed",
        ),
        (b'{"customerId": "1234"}', {"content-encoding": "br"}, "Content-Encoding"),
    ],
    ids=["broken-json", "not-object", "no-customer", "missing-field", "gzip-bomb", "encoding"],
)
async def test_malformed_notifications_are_400_in_the_vendor_standard(
    client: httpx.AsyncClient, acme: Services, content: bytes, headers: dict[str, str], debug: str
) -> None:
    response = await client.post(
        URL,
        content=content,
        headers={"content-type": "application/json"} | basic_header() | headers,
    )
    assert response.status_code == 400
    error = error_of(response)
    assert "could not read" in error["userMessage"]
    assert debug in error["debugErrorMessage"]
    assert await records(acme) == []


async def test_misconfigured_connection_is_500_for_the_vendor(
    client: httpx.AsyncClient, acme: Services
) -> None:
    # A link event without a link template cannot be answered; the tenants file would have
    # refused it, so the row is broken behind its back.
    options = icims_options()
    del options["events"]["JobPostToWebEvent"]["link_template"]
    async with acme.engine.begin() as conn:
        await conn.execute(
            text("UPDATE connection SET options = CAST(:o AS jsonb)"),
            {"o": orjson.dumps(options).decode()},
        )
    recruiter = await send(client, payload("JobPostToWebEvent"))
    candidate = await send(client, payload("AssessmentEvent"))
    assert recruiter.status_code == candidate.status_code == 500
    error = error_of(recruiter)
    assert "contact the vendor" in error["userMessage"] and "reference" in error["userMessage"]
    assert "JobPostToWebEvent.link_template" in error["debugErrorMessage"]
    assert "recruiting team" in error_of(candidate)["userMessage"]
    assert not any(secret in recruiter.text for secret in SECRET_VALUES)
    assert await records(acme) == []


async def test_type_aliases_map_another_job_edit_name(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_icims(
        services, options=icims_options(type_aliases={"JobPostEditEvent": "ViewJobWebPostEvent"})
    )
    response = await send(client, payload("JobPostEditEvent"))
    assert response.status_code == 303
    [row] = await records(services)
    assert row.event_type == "ViewJobWebPostEvent"
    assert row.payload["eventType"] == "JobPostEditEvent"


def test_dedupe_keys_use_the_documented_identifiers_unambiguously() -> None:
    base = payload("WorkFlowStatusChangeEvent")
    event = WorkFlowStatusChangeEvent.model_validate(base)
    key = dedupe_content(event)
    assert key == dedupe_content(WorkFlowStatusChangeEvent.model_validate(dict(base)))
    for field in ("personId", "jobId", "systemId", "newStatus", "oldStatus", "customerId"):
        changed = WorkFlowStatusChangeEvent.model_validate({**base, field: "other"})
        assert dedupe_content(changed) != key, field
    # The recruiter who pressed the button is not part of the action.
    assert dedupe_content(WorkFlowStatusChangeEvent.model_validate({**base, "userId": "9"})) == key
    # Ids containing the old separator cannot make two different actions meet.
    one = WorkFlowStatusChangeEvent.model_validate({**base, "personId": "1:2", "jobId": "3"})
    two = WorkFlowStatusChangeEvent.model_validate({**base, "personId": "1", "jobId": "2:3"})
    assert dedupe_content(one) != dedupe_content(two)
    assert thread(one) == thread(two) == thread(event)


@pytest.mark.parametrize(
    "event_type", ["WorkFlowStatusChangeEvent", "JobPostToWebEvent", "JobUnpostToWebEvent"]
)
async def test_a_repeat_of_the_newest_event_is_a_duplicate_the_next_day(
    client: httpx.AsyncClient, acme: Services, event_type: str
) -> None:
    # Scenario 5: the user retries after contacting support, a day later. The ids tell a retry
    # from a new action (a new action moves the thread on), so no window is needed.
    body = icims_sample(event_type)
    first = await send(client, body)
    await age_records(acme, 26 * 3600)
    retry = await send(client, body, auth="hmac")
    assert retry.status_code == first.status_code
    assert retry.headers["hirehook-duplicate"] == "true"
    assert retry.headers["hirehook-record-id"] == first.headers["hirehook-record-id"]
    assert retry.headers.get("location") == first.headers.get("location")
    assert len(await records(acme)) == 1


@pytest.mark.parametrize("gap_s", [0, 1, 3 * 86400], ids=["together", "a-second", "days"])
async def test_post_unpost_post_of_a_job_records_three_events(
    client: httpx.AsyncClient, acme: Services, gap_s: int
) -> None:
    post, unpost = icims_sample("JobPostToWebEvent"), icims_sample("JobUnpostToWebEvent")
    answers = []
    for body in (post, unpost, post):
        answers.append(await send(client, body, extra_headers={"link": icims_link_header(body)}))
        await age_records(acme, gap_s)
    assert [a.status_code for a in answers] == [303, 200, 303]
    assert all("hirehook-duplicate" not in a.headers for a in answers)
    assert len({a.headers["hirehook-record-id"] for a in answers}) == 3
    # The second posting is a record of its own, with a link of its own.
    assert answers[0].headers["location"] != answers[2].headers["location"]
    rows = await records(acme)
    assert [r.event_type for r in rows] == [
        "JobPostToWebEvent",
        "JobUnpostToWebEvent",
        "JobPostToWebEvent",
    ]
    # A job's postings and unpostings are one thread.
    assert len({r.thread for r in rows}) == 1
    # iCIMS retrying the last posting is still that posting.
    again = await send(client, post)
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.headers["location"] == answers[2].headers["location"]
    assert len(await records(acme)) == 3


async def test_an_unposting_recorded_in_its_own_thread_still_counts(
    client: httpx.AsyncClient, acme: Services
) -> None:
    # Unpostings recorded before a job's postings and unpostings shared a thread.
    post, unpost = icims_sample("JobPostToWebEvent"), icims_sample("JobUnpostToWebEvent")
    first = await send(client, post)
    await send(client, unpost)
    async with acme.engine.begin() as conn:
        await conn.execute(
            text("UPDATE record SET thread = :old WHERE event_type = 'JobUnpostToWebEvent'"),
            {"old": digest("JobUnpostToWebEvent", CUSTOMER, "1209")},
        )
    again = await send(client, post)
    assert "hirehook-duplicate" not in again.headers
    assert again.headers["location"] != first.headers["location"]
    assert len(await records(acme)) == 3


async def test_a_job_edit_by_another_user_is_a_new_edit(
    client: httpx.AsyncClient, acme: Services
) -> None:
    first = await send(client, icims_sample("ViewJobWebPostEvent"))
    other = await send(client, {**icims_sample("ViewJobWebPostEvent"), "userId": "122"})
    assert first.status_code == other.status_code == 303
    assert "hirehook-duplicate" not in other.headers
    assert other.headers["hirehook-record-id"] != first.headers["hirehook-record-id"]
    assert other.json()["link"] == other.headers["location"]
    # And every later edit is new information too, not a duplicate forever.
    third = await send(client, icims_sample("ViewJobWebPostEvent"))
    assert "hirehook-duplicate" not in third.headers
    assert len(await records(acme)) == 3


async def test_a_job_edit_repeated_by_its_user_is_a_retry_only_for_a_short_while(
    client: httpx.AsyncClient, acme: Services
) -> None:
    # Job Edit carries only customerId, userId and systemId: the same user's retry and their
    # next edit look alike, so time decides (ten minutes by default).
    body = icims_sample("ViewJobWebPostEvent")
    first = await send(client, body)
    await age_records(acme, 300)
    retry = await send(client, body, auth="hmac", gzip_body=False)
    assert retry.headers["hirehook-duplicate"] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert retry.content == first.content
    await age_records(acme, 700)
    edit = await send(client, body)
    assert edit.status_code == 303
    assert "hirehook-duplicate" not in edit.headers
    assert edit.headers["hirehook-record-id"] != first.headers["hirehook-record-id"]
    assert len(await records(acme)) == 2


async def test_the_job_edit_retry_window_is_set_per_connection(
    client: httpx.AsyncClient, services: Services
) -> None:
    options = icims_options()
    options["events"]["ViewJobWebPostEvent"]["dedupe_window_s"] = 60
    await add_icims(services, options=options)
    body = icims_sample("ViewJobWebPostEvent")
    await send(client, body)
    await age_records(services, 30)
    assert (await send(client, body)).headers["hirehook-duplicate"] == "true"
    await age_records(services, 60)
    assert "hirehook-duplicate" not in (await send(client, body)).headers
    assert len(await records(services)) == 2


@pytest.mark.parametrize("where", ["links", "link-header"])
async def test_an_onboard_portal_task_names_its_job(
    client: httpx.AsyncClient, acme: Services, where: str
) -> None:
    body = icims_sample("OnboardPortalTaskEvent")
    job = "https://api.icims.com/customers/1234/jobs/1209"
    body["links"] = [link for link in body["links"] if link["rel"] != "job"]
    headers = {}
    if where == "links":
        body["links"].append({"rel": "job", "title": "Job Profile", "url": job})
    else:
        headers["link"] = f'{job};rel="job";title="Job Profile",'
    response = await send(client, body, extra_headers=headers)
    assert response.status_code == 303
    [row] = await records(acme)
    assert row.subjects == {"person": "2468", "job": "1209"}


async def test_an_onboard_portal_task_without_a_job_link_still_records(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = {**icims_sample("OnboardPortalTaskEvent"), "links": []}
    response = await send(client, body)
    assert response.status_code == 303
    [row] = await records(acme)
    assert row.subjects == {"person": "2468"}


async def test_a_status_flowing_back_and_forth_records_every_change(
    client: httpx.AsyncClient, acme: Services
) -> None:
    forth = payload("WorkFlowStatusChangeEvent")
    back = {**forth, "oldStatus": forth["newStatus"], "newStatus": forth["oldStatus"]}
    answers = [await send(client, body) for body in (forth, back, forth)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("hirehook-duplicate" not in a.headers for a in answers)
    assert len({a.headers["hirehook-record-id"] for a in answers}) == 3
    # A real repeat of the newest change is still the same delivery.
    again = await send(client, forth)
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.headers["hirehook-record-id"] == answers[2].headers["hirehook-record-id"]
    assert len(await records(acme)) == 3


async def test_ids_with_colons_never_collide(client: httpx.AsyncClient, acme: Services) -> None:
    first = {**payload("WorkFlowStatusChangeEvent"), "personId": "1:2", "jobId": "3"}
    second = {**payload("WorkFlowStatusChangeEvent"), "personId": "1", "jobId": "2:3"}
    answers = [await send(client, body) for body in (first, second)]
    assert all("hirehook-duplicate" not in a.headers for a in answers)
    assert len(await records(acme)) == 2


async def test_no_secret_reaches_logs_or_error_bodies(
    client: httpx.AsyncClient, acme: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies: list[str] = []
    body = payload("JobPostToWebEvent")
    for headers in (
        basic_header(password=BASIC_PASSWORD + "x"),
        basic_header(user="x", password=BASIC_PASSWORD),
        icims_hmac_headers(b"other body"),
        {"authorization": "Bearer " + CLIENT_SECRET},
    ):
        response = await send(client, body, auth="none", extra_headers=headers)
        assert response.status_code == 401
        bodies.append(response.text)
    bad_token = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, "nope")
    )
    bodies.append(bad_token.text)
    good_token = await fetch_token(client)
    await send(client, body, auth="oauth", token=good_token)
    captured = capsys.readouterr()
    events = logged_events(captured)
    assert "icims.unauthenticated" in events and "icims.token_refused" in events
    for secret in (*SECRET_VALUES, good_token):
        assert secret not in captured.out + captured.err
        assert not any(secret in b for b in bodies)


async def test_fifty_concurrent_deliveries_make_one_record_and_one_link(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = payload("OnboardPortalTaskEvent")
    responses = await asyncio.gather(*(send(client, body) for _ in range(50)))
    assert {r.status_code for r in responses} == {303}
    assert len({r.headers["location"] for r in responses}) == 1
    assert sum("hirehook-duplicate" not in r.headers for r in responses) == 1
    assert len(await records(acme)) == 1
    assert await outbox_count(acme) == 1


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [("WorkFlowStatusChangeEvent", "temporarily unavailable"), ("AssessmentEvent", "briefly")],
)
async def test_database_outage_is_503_in_the_vendor_standard(
    services: Services, settings: Settings, pg_proxy: FaultProxy, event_type: str, expected: str
) -> None:
    await add_icims(services)
    async for client in run_app(create_app(via_proxy(settings, pg_proxy))):
        # Warm the connection cache so the failure hits the intake itself.
        warm = await send(client, payload("JobUnpostToWebEvent", systemId="1"))
        assert warm.status_code == 200
        pg_proxy.set_mode("stall")
        response = await send(client, payload(event_type))
        pg_proxy.set_mode("open")
        retried = await send(client, payload(event_type))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    error = error_of(response)
    assert expected in error["userMessage"]
    assert "database" in error["debugErrorMessage"]
    # Nothing was lost: the retry is recorded as a new event, not answered as a duplicate.
    assert retried.status_code in (200, 303) and "hirehook-duplicate" not in retried.headers
    assert len(await records(services)) == 2


async def test_recorded_events_are_processed_by_the_icims_worker_handler(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await send(client, payload("AssessmentEvent"))
    record_id = response.headers["hirehook-record-id"]
    ctx = {"services": acme, "handlers": sources.handlers()}
    assert await process_record(ctx, record_id) == "processed"
    [row] = await records(acme)
    assert row.state == "processed"
    # The record keeps its first answer, link included, for whoever delivers it onwards.
    assert row.answer_status == 303
    assert row.answer_headers["Location"] == response.headers["location"]
