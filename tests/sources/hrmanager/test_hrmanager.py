"""Talentech HR Manager webhooks through the route: signatures, User Data, all 20 events, dedupe,
quarantine and enrichment by real workers against the fake HR Manager API."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.admin.tenants_file import apply_tenants, read_tenants_file
from app.cli import cli
from app.dev.demo import DEMO_TENANTS
from app.intake.connections import ConnectionInfo
from app.platform.settings import Settings
from app.schemas import hrmanager_config
from app.services import Services
from tests.support.app import arq_queue, make_settings, threaded_app
from tests.support.fake_ats import HRM_KEY, FakeATS
from tests.support.hrmanager import HEX_SECRET, URL, sign, signed
from tests.support.workers import add_source, fast_settings, rows, run_worker

UTF8_SECRET = "acme-hr-manager-shared-secret-utf8-0001"
USER_DATA = "acme-user-data-key-0123456789-abcdefXYZ"


async def post(
    client: httpx.AsyncClient,
    payload: dict[str, Any],
    *,
    key: bytes | None = None,
    url: str = URL,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    body = orjson.dumps(payload)
    return await client.post(url, content=body, headers=signed(body, key), params=params)


async def connect(
    services: Services,
    fake_ats: FakeATS,
    *,
    options: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    destination: bool = False,
) -> ConnectionInfo:
    """Tenant ``acme`` with an HR Manager connection to the fake API."""
    return await add_source(
        services,
        fake_ats,
        "hrmanager",
        options=options,
        secrets={"api_key": HRM_KEY, "signing_secrets": [HEX_SECRET], **(secrets or {})},
        destination=destination,
    )


@pytest.fixture
async def acme(services: Services, fake_ats: FakeATS) -> Services:
    await connect(services, fake_ats)
    return services


async def counts(services: Services) -> tuple[int, int]:
    async with services.engine.connect() as conn:
        records = (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one()
        outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
    return records, outbox


async def test_a_signed_event_is_recorded_with_its_subjects_and_enqueued(
    client: httpx.AsyncClient, acme: Services
) -> None:
    payload = {"Event": "CandidateStatusUpdated", "CandidateId": 1001, "PositionId": "77"}
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["event"] == "CandidateStatusUpdated"
    [row] = await rows(acme, "SELECT * FROM record")
    assert str(row.id) == body["record_id"]
    assert (row.event_type, row.known, row.state) == ("CandidateStatusUpdated", True, "received")
    assert row.subjects == {"candidate": "1001", "position": "77"}
    assert row.payload == payload and bytes(row.raw_body) == orjson.dumps(payload)
    assert await counts(acme) == (1, 1)
    assert await arq_queue(acme.queue.redis) == [f"record:{row.id}"]


async def test_a_utf8_secret_verifies_when_the_connection_says_so(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    await connect(
        services,
        fake_ats,
        options={"secret_encoding": "utf-8"},
        secrets={"signing_secrets": [UTF8_SECRET]},
    )
    payload = {"Event": "CandidateUpdated", "CandidateId": "1"}
    assert (await post(client, payload, key=UTF8_SECRET.encode())).status_code == 200
    # The same text hex-decoded is another key: refused.
    other = {"Event": "CandidateUpdated", "CandidateId": "2"}
    assert (await post(client, other, key=bytes.fromhex(HEX_SECRET))).status_code == 401
    assert await counts(services) == (1, 1)


async def test_any_listed_secret_verifies(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    second = b"second-webhook-shared-secret-hex-0002".hex()
    await connect(services, fake_ats, secrets={"signing_secrets": [HEX_SECRET, second]})
    payload = {"Event": "PositionPublished", "PositionId": "77"}
    assert (await post(client, payload, key=bytes.fromhex(second))).status_code == 200


@pytest.mark.parametrize("header", [None, "", "   "])
async def test_a_missing_signature_is_400_and_records_nothing(
    client: httpx.AsyncClient, acme: Services, header: str | None
) -> None:
    headers = {} if header is None else {"X-Signature-Base64HmacSha256": header}
    response = await client.post(URL, content=b'{"Event":"CandidateUpdated"}', headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_signature"
    assert await counts(acme) == (0, 0)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (
            lambda body, h: (body, h | {"X-Signature-Base64HmacSha256": sign(body, b"x" * 32)}),
            "key",
        ),
        (lambda body, h: (body.replace(b"1001", b"1002"), h), "tampered body"),
        (lambda body, h: (body, h | {"X-Signature-Base64HmacSha256": "not base64!"}), "garbage"),
    ],
)
async def test_a_wrong_signature_is_401_and_records_nothing(
    client: httpx.AsyncClient, acme: Services, mutate: Any, why: str
) -> None:
    body = orjson.dumps({"Event": "CandidateUpdated", "CandidateId": "1001"})
    content, headers = mutate(body, signed(body))
    response = await client.post(URL, content=content, headers=headers)
    assert response.status_code == 401, why
    assert response.json()["error"]["code"] == "unauthorized"
    assert await counts(acme) == (0, 0)


async def test_an_unknown_tenant_answers_as_a_wrong_or_missing_signature(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = orjson.dumps({"Event": "CandidateUpdated", "CandidateId": "1001"})
    unknown = await client.post("/v1/hrmanager/nobody/events", content=body, headers=signed(body))
    wrong = await client.post(URL, content=body, headers=signed(body, b"y" * 32))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.content == wrong.content
    assert HEX_SECRET not in unknown.text
    unsigned_unknown = await client.post("/v1/hrmanager/nobody/events", content=body)
    unsigned_known = await client.post(URL, content=body)
    assert unsigned_unknown.status_code == unsigned_known.status_code == 400
    assert unsigned_unknown.content == unsigned_known.content
    assert await counts(acme) == (0, 0)


@pytest.mark.parametrize(
    ("user_data", "status"),
    [(USER_DATA, 200), (USER_DATA[:-1] + "0", 401), (None, 401), (12345, 401)],
    ids=["right", "wrong", "missing", "not-a-string"],
)
async def test_the_user_data_key_is_required_with_the_signature(
    client: httpx.AsyncClient,
    services: Services,
    fake_ats: FakeATS,
    user_data: Any,
    status: int,
) -> None:
    await connect(services, fake_ats, secrets={"user_data_key": USER_DATA})
    payload: dict[str, Any] = {"Event": "CandidateUpdated", "CandidateId": "1001"}
    if user_data is not None:
        payload["UserData"] = user_data
    response = await post(client, payload)
    assert response.status_code == status, response.text
    assert await counts(services) == ((1, 1) if status == 200 else (0, 0))


async def test_the_user_data_key_is_never_stored(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    await connect(
        services,
        fake_ats,
        options={"user_data_path": "UserData.key"},
        secrets={"user_data_key": USER_DATA},
    )
    # [I] A .NET sender may put the section in as a string of JSON; the path reaches into it.
    payload = {
        "Event": "CandidateUpdated",
        "CandidateId": "1001",
        "UserData": orjson.dumps({"key": USER_DATA, "note": "static"}).decode(),
    }
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    [row] = await rows(services, "SELECT payload, raw_body, headers FROM record")
    stored = orjson.dumps(row.payload) + bytes(row.raw_body) + orjson.dumps(row.headers)
    assert USER_DATA.encode() not in stored
    assert orjson.loads(row.payload["UserData"]) == {"key": "[redacted]", "note": "static"}
    # A repeat is still one record: the key is the same whatever the secret's value.
    again = await post(client, payload)
    assert again.headers["hirehook-duplicate"] == "true"


@pytest.mark.parametrize(
    "spelling",
    [
        "\\u0061cme-user-data-key-0123456789-abcdefXYZ",  # the first letter escaped
        "acme-user-data-key-0123456789-abcdef\\u0058YZ",
        "acme\\u002duser-data-key-0123456789-abcdefXYZ",
    ],
)
async def test_the_user_data_key_is_never_stored_however_it_is_spelled(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS, spelling: str
) -> None:
    await connect(
        services,
        fake_ats,
        options={"require_signature": False},
        secrets={"signing_secrets": [], "user_data_key": USER_DATA},
    )
    body = (
        '{"Event": "CandidateUpdated", "CandidateId": "1001", "Name": "Ren\\u00e9",'
        f' "UserData": "{spelling}", "Note": "key={spelling}"}}'
    ).encode()
    assert orjson.loads(body)["UserData"] == USER_DATA  # the parser reads the key
    response = await client.post(URL, content=body)
    assert response.status_code == 200, response.text
    [row] = await rows(services, "SELECT payload, raw_body FROM record")
    raw = bytes(row.raw_body)
    stored = orjson.loads(raw)
    assert USER_DATA not in orjson.dumps(stored).decode() and USER_DATA.encode() not in raw
    assert stored["UserData"] == "[redacted]" and stored["Note"] == "key=[redacted]"
    assert row.payload["UserData"] == "[redacted]"
    # What did not hold the key is stored as it arrived.
    assert b'"Name": "Ren\\u00e9"' in raw


async def test_a_user_data_key_alone_can_authenticate(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    # Set up as HR Manager's Webhooks page describes (docs/ats/hrmanager.md): a User Data key, no
    # shared secret and no option to flip.
    await connect(
        services,
        fake_ats,
        secrets={"signing_secrets": [], "user_data_key": USER_DATA},
    )
    payload = {"Event": "CandidateHired", "CandidateId": "1001", "UserData": USER_DATA}
    ok = await client.post(URL, content=orjson.dumps(payload))
    assert ok.status_code == 200, ok.text
    payload["UserData"] = "someone-else-guessing-the-key-000000000"
    refused = await client.post(URL, content=orjson.dumps(payload))
    assert refused.status_code == 401
    assert await counts(services) == (1, 1)


# Each of the 20 documented events (docs/ats/hrmanager.md): a body, the subjects derived, the fake
# API paths a worker calls
# and the type delivered to the tenant.
ALL_EVENTS: list[tuple[str, dict[str, Any], dict[str, str], list[str], str]] = [
    (
        "PositionPublished",
        {"PositionId": 77},
        {"position": "77"},
        ["Positions/77"],
        "job.published",
    ),
    (
        "PositionUnpublished",
        {"positionId": "77"},
        {"position": "77"},
        ["Positions/77"],
        "job.unpublished",
    ),
    (
        "ProjectCreated",
        {"ProjectId": "501", "PositionId": "77"},
        {"project": "501", "position": "77"},
        ["Positions/77"],
        "hrmanager.ProjectCreated",
    ),
    ("ProjectUpdated", {"project_id": "501"}, {"project": "501"}, [], "hrmanager.ProjectUpdated"),
    (
        "ProjectDeleted",
        {"ProjectId": "501", "PositionId": "77"},
        {"project": "501", "position": "77"},
        [],
        "hrmanager.ProjectDeleted",
    ),
    (
        "ProjectDeactivated",
        {"ProjectID": "501"},
        {"project": "501"},
        [],
        "hrmanager.ProjectDeactivated",
    ),
    (
        "SendCalendarInvite",
        {"CandidateId": "1001", "PositionId": "77", "UserId": "42"},
        {"candidate": "1001", "position": "77", "user": "42"},
        ["Candidates/1001", "Positions/77", "Users/42"],
        "hrmanager.SendCalendarInvite",
    ),
    (
        "CandidateRegistered",
        {"CandidateId": "1001", "PositionId": "77"},
        {"candidate": "1001", "position": "77"},
        ["Candidates/1001", "Positions/77"],
        "candidate.created",
    ),
    ("CandidateDeleted", {"CandidateId": "1001"}, {"candidate": "1001"}, [], "candidate.deleted"),
    (
        "CandidateUpdated",
        {"candidateId": 1001},
        {"candidate": "1001"},
        ["Candidates/1001"],
        "candidate.updated",
    ),
    (
        "CandidateStatusUpdated",
        {"candidate_id": "1001", "position_id": "77"},
        {"candidate": "1001", "position": "77"},
        ["Candidates/1001", "Positions/77"],
        "application.updated",
    ),
    (
        "CandidateDeletedByUser",
        {"CandidateId": "1001"},
        {"candidate": "1001"},
        [],
        "candidate.deleted",
    ),
    (
        "CandidateDeletedOwn",
        {"CandidateId": "1001"},
        {"candidate": "1001"},
        [],
        "candidate.deleted",
    ),
    (
        "CandidateHired",
        {"CandidateId": "1001", "PositionId": "77"},
        {"candidate": "1001", "position": "77"},
        ["Candidates/1001", "Positions/77"],
        "candidate.hired",
    ),
    (
        "AdvertisementUpdated",
        {"AdvertisementId": "9001", "PositionId": "77"},
        {"advertisement": "9001", "position": "77"},
        ["Positions/77"],
        "hrmanager.AdvertisementUpdated",
    ),
    (
        "AdvertisementPublished",
        {"AdvertisementId": "9001"},
        {"advertisement": "9001"},
        [],
        "hrmanager.AdvertisementPublished",
    ),
    (
        "AdvertisementUnPublished",
        {"advertisementId": "9001"},
        {"advertisement": "9001"},
        [],
        "hrmanager.AdvertisementUnPublished",
    ),
    (
        "LayoutTemplatePublished",
        {"LayoutTemplateId": "12"},
        {"layout_template": "12"},
        [],
        "hrmanager.LayoutTemplatePublished",
    ),
    (
        "LayoutTemplateUnpublished",
        {"layout_template_id": "12"},
        {"layout_template": "12"},
        [],
        "hrmanager.LayoutTemplateUnpublished",
    ),
    (
        "QuestionnaireUpdated",
        {"QuestionnaireId": "33"},
        {"questionnaire": "33"},
        [],
        "hrmanager.QuestionnaireUpdated",
    ),
]


def test_the_cases_cover_the_seeds_twenty_events() -> None:
    from app.schemas.hrmanager import EVENT_NAMES
    from app.workers.hrmanager import PLANS

    assert [case[0] for case in ALL_EVENTS] == list(EVENT_NAMES)
    assert len(EVENT_NAMES) == 20
    # Every modelled event has an enrichment plan, so none is a dead letter for being unmapped.
    assert set(PLANS) == set(EVENT_NAMES)


@pytest.mark.parametrize(
    ("name", "ids", "subjects", "paths", "delivered"), ALL_EVENTS, ids=[c[0] for c in ALL_EVENTS]
)
async def test_every_event_type_is_parsed_and_enriched_without_a_dead_letter(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    name: str,
    ids: dict[str, Any],
    subjects: dict[str, str],
    paths: list[str],
    delivered: str,
) -> None:
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("7")
    fake_ats.add_hrm_position("77")
    fake_ats.add_hrm_user("42")
    await connect(services, fake_ats, destination=True)
    response = await post(client, {"Event": name, **ids})
    assert response.status_code == 200, response.text
    [row] = await rows(services, "SELECT id, event_type, known, subjects FROM record")
    assert (row.event_type, row.known, row.subjects) == (name, True, subjects)

    await run_worker(fast_settings(settings))
    prefix = "/hrm/restful.svc/v2/acme-corp/"
    assert sorted(c.path for c in fake_ats.calls_to("/hrm")) == sorted(prefix + p for p in paths)
    [record] = await rows(services, "SELECT state FROM record")
    assert record.state == "processed"
    assert await rows(services, "SELECT * FROM dead_letter") == []
    [delivery] = fake_ats.deliveries()
    event = orjson.loads(delivery.body)
    assert event["type"] == delivered
    assert event["data"]["source_event_type"] == name
    assert event["data"]["subjects"] == subjects
    if "candidate" in subjects and name.startswith("CandidateDeleted"):
        [candidate] = await rows(services, "SELECT external_id, deleted_at FROM candidate")
        assert candidate.deleted_at is not None
    elif any(p.startswith("Candidates/") for p in paths):
        assert event["data"]["candidate"]["first_name"] == "Ada"
    if "Users/42" in paths:
        assert event["data"]["user"]["Name"] == "Recruiter 42"
    if any(p.startswith("Positions/") for p in paths):
        assert event["data"]["job"]["title"].startswith("Engineer ")


async def test_fifty_duplicates_posted_are_one_record_and_one_fetch(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("2002")
    await connect(services, fake_ats)
    body = orjson.dumps({"Event": "CandidateUpdated", "CandidateId": "2002"})
    responses = await asyncio.gather(
        *(client.post(URL, content=body, headers=signed(body)) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert sum("hirehook-duplicate" not in r.headers for r in responses) == 1
    assert await counts(services) == (1, 1)
    await run_worker(fast_settings(settings))
    assert len(fake_ats.calls_to("/hrm")) == 1
    [candidate] = await rows(services, "SELECT external_id FROM candidate")
    assert candidate.external_id == "2002"


async def test_distinct_updates_inside_the_window_are_n_records_and_one_fetch(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("3003")
    # A slow answer keeps every job waiting on the one fetch at the same time.
    fake_ats.delay_s = 0.2
    await connect(services, fake_ats)
    updates = 12
    for index in range(updates):
        payload = {
            "Event": "CandidateUpdated",
            "CandidateId": "3003",
            "Timestamp": f"2026-03-01T10:00:{index:02d}Z",
        }
        assert (await post(client, payload)).status_code == 200
    assert await counts(services) == (updates, updates)
    await run_worker(fast_settings(settings, worker_concurrency=6))
    assert len(fake_ats.calls_to("/hrm")) == 1
    processed = await rows(services, "SELECT count(*) AS n FROM record WHERE state = 'processed'")
    assert processed[0].n == updates


@pytest.mark.parametrize(
    ("payload", "params", "expected"),
    [
        ({"EventName": "candidateupdated", "candidateId": 7}, None, "CandidateUpdated"),
        ({"event_type": "CandidateUpdated", "candidate_id": "7"}, None, "CandidateUpdated"),
        # An object's type is not an event name: the known name under another key wins.
        ({"Type": "Candidate", "Event": "CandidateUpdated", "CandidateId": "7"}, None, None),
        # The admin's ?event= takes precedence over the body.
        ({"Type": "Candidate", "CandidateId": "7"}, {"event": "CandidateUpdated"}, None),
        ({"CandidateId": "7"}, {"event": "Candidate\x00Updated"}, None),
    ],
)
async def test_the_event_name_is_found_in_the_body_or_the_url(
    client: httpx.AsyncClient,
    acme: Services,
    payload: dict[str, Any],
    params: dict[str, str] | None,
    expected: str | None,
) -> None:
    response = await post(client, payload, params=params)
    assert response.status_code == 200, response.text
    [row] = await rows(acme, "SELECT event_type, known, subjects FROM record")
    assert (row.event_type, row.known) == (expected or "CandidateUpdated", True)
    assert row.subjects == {"candidate": "7"}


async def test_event_aliases_map_the_senders_names(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    await connect(services, fake_ats, options={"event_aliases": {"12": "CandidateHired"}})
    response = await post(client, {"EventType": 12, "CandidateId": "7"})
    assert response.status_code == 200
    [row] = await rows(services, "SELECT event_type, known FROM record")
    assert (row.event_type, row.known) == ("CandidateHired", True)


async def test_an_unknown_event_name_is_recorded_but_not_dispatched(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(client, {"Event": "OfferSigned", "CandidateId": "7", "OfferId": "3"})
    assert response.status_code == 200
    [row] = await rows(acme, "SELECT event_type, known, state, subjects FROM record")
    assert (row.event_type, row.known, row.state) == ("OfferSigned", False, "received")
    assert row.subjects == {"candidate": "7"}
    assert await counts(acme) == (1, 0)
    assert await arq_queue(acme.queue.redis) == []
    assert await rows(acme, "SELECT * FROM dead_letter") == []


async def test_an_event_without_a_name_is_quarantined(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(client, {"CandidateId": "7"})
    assert response.status_code == 200
    [letter] = await rows(acme, "SELECT stage, kind, reason, detail FROM dead_letter")
    assert (letter.stage, letter.kind, letter.reason) == (
        "intake",
        "configuration",
        "unexpected_shape",
    )
    assert "?event=" in letter.detail
    assert await counts(acme) == (1, 0)


async def test_a_missing_id_is_quarantined_then_released_once_payload_fields_name_it(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    from app.admin import dead_letters
    from app.admin.service import reparsers
    from app.store.dead_letters import Filters

    fake_ats.add_hrm_candidate("1001")
    await connect(services, fake_ats)
    payload = {"Applicant": {"Ref": "1001"}}
    response = await post(client, payload, params={"event": "CandidateUpdated"})
    assert response.status_code == 200, response.text
    assert await counts(services) == (1, 0)
    [letter] = await rows(services, "SELECT reason, detail FROM dead_letter")
    assert letter.reason == "unexpected_shape"
    assert "candidate_id: missing" in letter.detail
    assert "options.payload_fields.candidate_id" in letter.detail
    # A repeat is the same record, not a second quarantined one.
    again = await post(client, payload, params={"event": "CandidateUpdated"})
    assert again.headers["hirehook-duplicate"] == "true"

    # Retried before the fix: still does not fit, and a letter with the current problem stays.
    assert await dead_letters.retry(services.engine, services.queue, Filters(), reparsers()) == 1
    [row] = await rows(services, "SELECT state FROM record")
    assert row.state == "quarantined"

    await connect(
        services, fake_ats, options={"payload_fields": {"candidate_id": ["Applicant.Ref"]}}
    )
    assert await dead_letters.retry(services.engine, services.queue, Filters(), reparsers()) == 1
    [row] = await rows(services, "SELECT event_type, known, state, subjects FROM record")
    # The event name came from the webhook's URL, kept with the record.
    assert (row.event_type, row.known, row.state) == ("CandidateUpdated", True, "received")
    assert row.subjects == {"candidate": "1001"}
    await run_worker(fast_settings(settings))
    [row] = await rows(services, "SELECT state FROM record")
    assert row.state == "processed"
    assert len(fake_ats.calls_to("/hrm/restful.svc/v2/acme-corp/Candidates/1001")) == 1
    open_letters = await rows(services, "SELECT * FROM dead_letter WHERE resolved_at IS NULL")
    assert open_letters == []


async def test_an_id_of_the_wrong_type_is_quarantined_without_echoing_it(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(client, {"Event": "CandidateUpdated", "CandidateId": {"v": "s3cr3t"}})
    assert response.status_code == 200
    [letter] = await rows(acme, "SELECT detail FROM dead_letter")
    assert "candidate_id" in letter.detail and "s3cr3t" not in letter.detail


async def test_gzip_bodies_signed_before_or_after_compression(
    client: httpx.AsyncClient, acme: Services
) -> None:
    plain = orjson.dumps({"Event": "CandidateUpdated", "CandidateId": "1"})
    packed = gzip.compress(plain)
    headers = signed(plain) | {"content-encoding": "gzip"}
    assert (await client.post(URL, content=packed, headers=headers)).status_code == 200
    plain2 = orjson.dumps({"Event": "CandidateUpdated", "CandidateId": "2"})
    packed2 = gzip.compress(plain2)
    headers2 = signed(packed2) | {"content-encoding": "gzip"}
    assert (await client.post(URL, content=packed2, headers=headers2)).status_code == 200
    stored = await rows(acme, "SELECT raw_body FROM record ORDER BY id")
    assert [bytes(r.raw_body) for r in stored] == [plain, plain2]
    # A wrong signature is refused whether or not the body inflates.
    bad = signed(plain, b"z" * 32) | {"content-encoding": "gzip"}
    assert (await client.post(URL, content=packed, headers=bad)).status_code == 401


async def test_a_gzip_bomb_with_a_wrong_signature_is_refused_before_inflating(
    client: httpx.AsyncClient, acme: Services
) -> None:
    bomb = gzip.compress(b'{"Event":"' + b"0" * (50 * 1024 * 1024) + b'"}')
    headers = signed(b"other", b"z" * 32) | {"content-encoding": "gzip"}
    response = await client.post(URL, content=bomb, headers=headers)
    # Inflating stops at the cap: 413, never memory for 50 MB.
    assert response.status_code == 413
    assert await counts(acme) == (0, 0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b'{"Event": ', "not valid UTF-8 JSON"), (b"[1]", "must be a JSON object")],
)
async def test_malformed_signed_bodies_are_400(
    client: httpx.AsyncClient, acme: Services, body: bytes, expected: str
) -> None:
    response = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 400
    assert expected in response.json()["error"]["message"]
    assert await counts(acme) == (0, 0)


_SIGNED = {"signing_secrets": [HEX_SECRET]}


@pytest.mark.parametrize(
    ("options", "secrets", "message"),
    [
        ({}, {"signing_secrets": ["0123abcd"]}, "signing_secrets.0: String should have at least"),
        ({}, {"signing_secrets": ["z" * 40]}, "signing_secrets.0: not hexadecimal"),
        ({}, {}, "secrets: set secrets.user_data_key"),
        ({"require_signature": False}, {}, "secrets: set secrets.user_data_key"),
        (
            {"require_signature": False},
            _SIGNED,
            "options.require_signature: false needs secrets.user_data_key",
        ),
        (
            {"require_signature": True},
            {"user_data_key": USER_DATA},
            "secrets.signing_secrets: required while options.require_signature is true",
        ),
        (
            {},
            {**_SIGNED, "user_data_key": "a+b" * 20},
            "user_data_key: String should match pattern",
        ),
        ({}, {**_SIGNED, "user_data_key": "k" * 20}, "user_data_key: String should have at least"),
        ({}, {**_SIGNED, "password": "p" * 40}, "secrets: password: Extra inputs"),
        ({"payload_fields": {"applicant_id": ["X"]}}, _SIGNED, "'applicant_id' is not one of"),
        ({"event_aliases": {"1": "Nope"}}, _SIGNED, "not an HR Manager event"),
        ({"secret_encoding": "base64"}, _SIGNED, "options: secret_encoding"),
        ({"candidate_path": "Candidates"}, _SIGNED, "options: candidate_path"),
        ({"limits": {"rate_per_s": -1}}, _SIGNED, "options: limits"),
        ({"colour": "blue"}, _SIGNED, "options: colour: Extra inputs are not permitted"),
    ],
)
def test_connection_check_names_the_setting_never_its_value(
    options: dict[str, Any], secrets: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=r"options|secrets") as caught:
        hrmanager_config.check(options, secrets)
    assert message in str(caught.value)
    values = [
        *secrets.get("signing_secrets", []),
        secrets.get("user_data_key"),
        secrets.get("password"),
    ]
    for value in values:
        assert value is None or value not in str(caught.value)


def test_the_demo_connection_passes_its_check() -> None:
    spec = read_tenants_file(DEMO_TENANTS)
    [demo] = [t for t in spec.tenant if t.slug == "demo"]
    [conn] = [c for c in demo.connection if c.source == "hrmanager"]
    config = hrmanager_config.parse(conn.options, conn.secrets)
    assert config.signature_required and config.secrets.user_data_key


@pytest.mark.parametrize(
    ("options", "secrets", "required"),
    [
        ({}, {"user_data_key": USER_DATA}, False),
        ({}, {"signing_secrets": [HEX_SECRET]}, True),
        ({}, {"signing_secrets": [HEX_SECRET], "user_data_key": USER_DATA}, True),
        ({"require_signature": False}, {**_SIGNED, "user_data_key": USER_DATA}, False),
        ({"require_signature": True}, _SIGNED, True),
    ],
)
def test_a_signature_is_required_by_default_exactly_when_a_secret_is_configured(
    options: dict[str, Any], secrets: dict[str, Any], required: bool
) -> None:
    assert hrmanager_config.parse(options, secrets).signature_required is required


async def test_a_user_data_key_connection_wants_the_key_whatever_signature_comes(
    client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    """With only a User Data key a signature proves nothing: without the key, 401."""
    await connect(services, fake_ats, secrets={"signing_secrets": [], "user_data_key": USER_DATA})
    payload = {"Event": "CandidateHired", "CandidateId": "1001"}
    response = await post(client, payload)
    assert response.status_code == 401
    assert await counts(services) == (0, 0)


@pytest.fixture
def hirehook(settings: Settings) -> Iterator[str]:
    """Hirehook itself on 127.0.0.1 with an ephemeral port (its own thread and event loop)."""
    with threaded_app(
        lambda _port: make_settings(str(settings.database_url), str(settings.redis_url))
    ) as url:
        yield url


def answers(output: str) -> list[str]:
    """The command's ``<status> <event>: ...`` lines (the in-process server logs there too)."""
    return [line for line in output.splitlines() if re.match(r"^\d{3} [A-Z]", line)]


async def test_send_command_posts_all_twenty_samples_signed_with_the_demo_secrets(
    hirehook: str, services: Services
) -> None:
    await apply_tenants(
        read_tenants_file(DEMO_TENANTS), engine=services.engine, cipher=services.cipher
    )
    runner = CliRunner()
    first = await asyncio.to_thread(runner.invoke, cli, ["send", "hrmanager", "--url", hirehook])
    assert first.exit_code == 0, first.output
    lines = answers(first.output)
    assert len(lines) == 20 and all(line.startswith("200 ") for line in lines)
    assert all("(repeat)" not in line for line in lines)
    again = await asyncio.to_thread(runner.invoke, cli, ["send", "hrmanager", "--url", hirehook])
    assert again.exit_code == 0, again.output
    repeats = answers(again.output)
    assert len(repeats) == 20 and all(line.endswith("(repeat)") for line in repeats)

    in_url = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["send", "hrmanager", "--url", hirehook, "--event", "CandidateHired", "--in-url", "--gzip"],
    )
    assert in_url.exit_code == 0, in_url.output
    records = await rows(
        services,
        "SELECT event_type, known, state, payload, headers, markers FROM record ORDER BY id",
    )
    assert len(records) == 21
    assert all(r.known and r.state == "received" for r in records)
    from app.schemas.hrmanager import EVENT_NAMES

    assert [r.event_type for r in records[:20]] == list(EVENT_NAMES)
    last = records[20]
    assert last.event_type == "CandidateHired" and "Event" not in last.payload
    assert last.markers == {"hirehook-url-event": "CandidateHired"}
    assert "hirehook-url-event" not in last.headers
    assert all(r.payload["UserData"] == "[redacted]" for r in records)


async def test_send_command_with_a_wrong_secret_exits_nonzero(
    hirehook: str, services: Services
) -> None:
    await apply_tenants(
        read_tenants_file(DEMO_TENANTS), engine=services.engine, cipher=services.cipher
    )
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        [
            "send",
            "hrmanager",
            "--url",
            hirehook,
            "--event",
            "CandidateUpdated",
            "--secret",
            "not-the-demo-secret-but-long-enough-0001",
            "--secret-encoding",
            "utf-8",
        ],
    )
    assert result.exit_code == 1
    assert "401 CandidateUpdated" in result.output
    assert await rows(services, "SELECT * FROM record") == []
