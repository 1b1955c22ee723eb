"""The admin API: keys, tenants and connections (secrets write-only), records, replay, dead
letters and statistics, driven in-process against real PostgreSQL, Redis and fake ATS APIs."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.admin import keys
from app.intake.core import Deadline, Event, json_answer
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.admin import (
    ADMIN,
    Recorder,
    auth,
    dead_lettered_delivery,
    post_hrmanager,
    post_keldair,
)
from tests.support.app import add_connection, logged_events, make_settings, run_app
from tests.support.fake_ats import SR_TOKEN, FakeATS, Step
from tests.support.keldair import OTHER, SECRET, URL, signed
from tests.support.keldair import event as keldair_event
from tests.support.workers import (
    HRM_SECRET,
    VENDOR_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


def _admin_routes() -> list[tuple[str, str]]:
    # Never connected to: only the OpenAPI document is read.
    app = create_app(make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", "redis://127.0.0.1:1"))
    fill = {
        "{slug}": "acme",
        "{connection_id}": "1",
        "{record_id}": str(uuid.uuid4()),
    }
    out = []
    for template, operations in app.openapi()["paths"].items():
        if template.startswith(ADMIN):
            path = template
            for name, value in fill.items():
                path = path.replace(name, value)
            out += [(method.upper(), path) for method in operations]
    return sorted(out)


ROUTES = _admin_routes()


def test_the_admin_routes_are_all_here() -> None:
    # If a route is added, it is covered by the 401 test below through this list.
    assert len(ROUTES) == 27


@pytest.fixture
async def unguarded(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the per-address guard off: this test fails on purpose a hundred times."""
    async for client in run_app(
        create_app(fast_settings(settings, auth_failure_limit_per_address=0))
    ):
        yield client


async def test_every_route_refuses_a_missing_unknown_malformed_or_revoked_key(
    unguarded: httpx.AsyncClient, services: Services, admin_key: str
) -> None:
    client = unguarded
    revoked = await keys.create(services.engine, "old")
    await keys.revoke(services.engine, revoked.id)
    wrong = keys.new_key()
    refused = [
        {},
        auth(wrong),
        auth(revoked.key),
        {"authorization": admin_key},  # no scheme
        {"authorization": f"Basic {admin_key}"},
        {"authorization": "Bearer not-a-key"},
    ]
    for method, path in ROUTES:
        for headers in refused:
            response = await client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    # The good key passes authentication on every route (whatever the answer is then).
    for method, path in ROUTES:
        response = await client.request(method, path, headers=auth(admin_key), json={})
        assert response.status_code != 401, (method, path)
    listed = {k.name: k for k in await keys.list_keys(services.engine)}
    assert listed["ops"].last_used_at is not None and listed["old"].last_used_at is None
    assert listed["old"].revoked_at is not None
    assert listed["ops"].prefix == admin_key[: len(listed["ops"].prefix)]
    assert len(listed["ops"].prefix) < len(admin_key) // 2


async def test_failed_keys_count_against_the_address_in_the_brute_force_guard(
    services: Services, settings: Settings, admin_key: str
) -> None:
    strict = fast_settings(settings, auth_failure_limit_per_address=3)
    async for client in run_app(create_app(strict)):
        answers = [
            (await client.get(f"{ADMIN}/tenants", headers=auth(keys.new_key()))).status_code
            for _ in range(4)
        ]
        assert answers[:2] == [401, 401] and answers[-1] == 429
        # Blocked: further wrong keys are refused until the cool-off ends ...
        blocked = await client.get(f"{ADMIN}/tenants", headers=auth(keys.new_key()))
        assert blocked.status_code == 429 and "retry-after" in blocked.headers
        # ... but the right key, from the same address, is not.
        assert (await client.get(f"{ADMIN}/tenants", headers=auth(admin_key))).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/connections"), ("POST", "/replays"), ("PATCH", "/tenants/acme")],
)
async def test_a_body_that_is_not_json_gets_the_admin_error_shape(
    admin: Recorder, method: str, path: str
) -> None:
    """FastAPI's own 400 for a body it cannot decode (found by make fuzz) is answered in the
    same shape as every other admin refusal, with a message that says what to send."""
    response = await admin.client.request(
        method,
        ADMIN + path,
        content=b";T@\xff!",
        headers={**auth(admin.key), "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "JSON" in error["message"]


async def test_keys_are_stored_only_as_digests(services: Services, admin_key: str) -> None:
    [row] = await rows(services, "SELECT name, digest, prefix FROM admin_key")
    assert bytes(row.digest) == keys.digest(admin_key) and len(admin_key) > 40
    assert admin_key not in str(row)


async def test_tenants_and_connections_are_managed_and_secrets_never_shown(
    admin: Recorder, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    created = await admin.call("POST", "/tenants", json={"slug": "acme", "name": "Acme"})
    assert created.status_code == 201 and created.json()["connection_list"] == []
    assert (
        await admin.call("POST", "/tenants", json={"slug": "acme", "name": "A"})
    ).status_code == 409
    bad_slug = await admin.call("POST", "/tenants", json={"slug": "Not OK", "name": "x"})
    assert bad_slug.status_code == 400 and bad_slug.json()["error"]["code"] == "bad_request"

    spec = {"tenant": "acme", "source": "keldair", "secrets": {"signing_secrets": [SECRET]}}
    made = await admin.call("POST", "/connections", json=spec)
    assert made.status_code == 201, made.text
    connection = made.json()
    assert connection["secrets"]["names"] == ["signing_secrets"]
    fingerprint = connection["secrets"]["fingerprint"]
    assert (await admin.call("POST", "/connections", json=spec)).status_code == 409
    unknown_tenant = await admin.call("POST", "/connections", json={**spec, "tenant": "nobody"})
    assert unknown_tenant.status_code == 404

    # The source's own checks run; they name the setting, never the value.
    weak = {**spec, "name": "weak", "secrets": {"signing_secrets": ["whsec_!!notbase64"]}}
    refused = await admin.call("POST", "/connections", json=weak)
    assert refused.status_code == 400 and "signing_secrets" in refused.text
    assert "notbase64" not in refused.text

    cid = connection["id"]
    assert (await post_keldair(client, keldair_event())).status_code == 200
    disabled = await admin.call("POST", f"/connections/{cid}/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert (await post_keldair(client, keldair_event())).status_code == 401
    assert (await admin.call("POST", f"/connections/{cid}/enable")).json()["enabled"] is True

    # Rotation: old secret refused, new one accepted, fingerprint changed, values never shown.
    rotated = await admin.call(
        "PUT", f"/connections/{cid}/secrets", json={"secrets": {"signing_secrets": [OTHER]}}
    )
    assert rotated.status_code == 200
    assert rotated.json()["secrets"]["fingerprint"] != fingerprint
    assert (await post_keldair(client, keldair_event())).status_code == 401
    raw = orjson.dumps(keldair_event())
    new = await client.post(
        URL, content=raw, headers={**signed(raw, secret=OTHER), "content-type": "application/json"}
    )
    assert new.status_code == 200

    updated = await admin.call("PATCH", f"/connections/{cid}", json={"options": {"nope": 1}})
    assert updated.status_code == 400
    renamed = await admin.call("PATCH", "/tenants/acme", json={"name": "Acme Corp"})
    assert renamed.json()["name"] == "Acme Corp"
    off = await admin.call("POST", "/tenants/acme/disable")
    assert off.json()["enabled_connections"] == 0
    assert (await post_keldair(client, keldair_event())).status_code == 401
    assert (await admin.call("POST", "/tenants/acme/enable")).json()["enabled_connections"] == 1

    listed = await admin.call("GET", "/connections", params={"tenant": "acme"})
    assert [c["id"] for c in listed.json()] == [cid]
    assert (await admin.call("GET", "/connections", params={"source": "icims"})).json() == []
    assert (await admin.call("GET", f"/connections/{cid}")).json()["source"] == "keldair"
    assert (await admin.call("GET", "/connections/999")).status_code == 404
    tenants = (await admin.call("GET", "/tenants")).json()
    assert [(t["slug"], t["connections"]) for t in tenants] == [("acme", 1)]
    assert (await admin.call("GET", "/tenants/acme")).json()["destination"] is None
    hook = {"url": "https://hooks.vendor.example/in", "secret": VENDOR_SECRET}
    destination = await admin.call("PUT", "/tenants/acme/destination", json=hook)
    assert destination.json()["destination"] == {
        "url": hook["url"],
        "enabled": True,
        "secret_set": True,
    }
    plain_http = await admin.call(
        "PUT", "/tenants/acme/destination", json={**hook, "url": "http://example.com/in"}
    )
    assert plain_http.status_code == 400
    short = await admin.call(
        "PUT", "/tenants/acme/destination", json={**hook, "secret": "whsec_c2hvcnQ="}
    )
    assert short.status_code == 400 and "c2hvcnQ" not in short.text
    admin.assert_never_shown(SECRET, OTHER, SECRET[6:], OTHER[6:], VENDOR_SECRET[6:])
    # Nor logged: the whole test's log output, every line of it.
    logged = capfd.readouterr()
    assert "admin.connection_updated" in logged_events(logged)
    for secret in (SECRET, OTHER, SECRET[6:], OTHER[6:]):
        assert secret not in logged.out + logged.err


async def test_records_are_filtered_and_paged_and_shown_in_full(
    admin: Recorder, client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    sent = []
    for n in range(7):
        body = keldair_event(data={"id": f"ap_{n % 3}", "firstName": "Ada", "jobId": f"job_{n}"})
        response = await post_keldair(client, body)
        assert response.status_code == 200
        sent.append(response.headers["hirehook-record-id"])

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "tenant": "acme"}
        if cursor:
            params["cursor"] = cursor
        page = (await admin.call("GET", "/records", params=params)).json()
        seen += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))  # newest first, each once

    person = await admin.call("GET", "/records", params={"person": "ap_1"})
    assert {r["id"] for r in person.json()["records"]} == {sent[1], sent[4]}
    job = await admin.call("GET", "/records", params={"job": "job_5", "source": "keldair"})
    assert [r["id"] for r in job.json()["records"]] == [sent[5]]
    none = await admin.call("GET", "/records", params={"event_type": "nothing.like.it"})
    assert none.json() == {"records": [], "next_cursor": None}
    # A tenant that does not exist is not a tenant without records.
    unknown = await admin.call("GET", "/records", params={"tenant": "globex"})
    assert unknown.status_code == 404
    typed = await admin.call(
        "GET", "/records", params={"event_type": "applicant.hired", "state": "received"}
    )
    assert len(typed.json()["records"]) == 7
    first = await admin.call("GET", f"/records/{sent[0]}")
    received_at = first.json()["received_at"]
    later = await admin.call("GET", "/records", params={"received_to": received_at})
    assert later.json()["records"] == []
    after = await admin.call("GET", "/records", params={"received_from": received_at})
    assert len(after.json()["records"]) == 7
    assert (await admin.call("GET", "/records", params={"cursor": "garbage"})).status_code == 400
    assert (await admin.call("GET", "/records", params={"limit": 0})).status_code == 400

    detail = first.json()
    raw = base64.b64decode(detail["raw_body"]["base64"])
    assert orjson.loads(raw)["data"]["jobId"] == "job_0"
    assert detail["raw_body"]["text"] == raw.decode()
    assert detail["headers"]["webhook-id"] == "msg_1"
    assert detail["answer"]["status"] == 200
    assert orjson.loads(detail["answer"]["body"]["text"])["record_id"] == sent[0]
    assert detail["outbox"]["attempts"] == 0 and detail["outbox"]["done_at"] is None
    assert detail["delivery"] is None and detail["dead_letters"] == []
    assert detail["ack_ms"] is not None and detail["ack_ms"] >= 0
    assert (await admin.call("GET", f"/records/{uuid.uuid4()}")).status_code == 404
    admin.assert_never_shown(SECRET, SECRET[6:])


async def test_replaying_twice_makes_no_second_row_and_no_second_delivery(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    rid = await record_event(
        services, conn, "CandidateStatusUpdated", {"CandidateId": "1001", "PositionId": "77"}
    )
    fast = fast_settings(settings)
    await run_worker(fast)
    assert len(fake_ats.deliveries()) == 1
    [first] = await rows(services, "SELECT processed_at FROM record")

    one = await admin.call("POST", f"/records/{rid}/replay")
    assert one.json()["enrichments"] == 1 and one.json()["deliveries"] == 0
    await run_worker(fast)
    filtered = await admin.call(
        "POST", "/replays", json={"filters": {"tenant": "acme", "source": "hrmanager"}}
    )
    assert filtered.json()["matched"] == 1 and filtered.json()["enrichments"] == 1
    await run_worker(fast)

    # Enrichment really ran again, yet one row each and one delivery.
    [last] = await rows(services, "SELECT processed_at FROM record")
    assert last.processed_at > first.processed_at
    assert len(fake_ats.deliveries()) == 1
    for table in ("candidate", "job", "application", "delivery"):
        assert len(await rows(services, f"SELECT 1 FROM {table}")) == 1, table  # noqa: S608
    detail = (await admin.call("GET", f"/records/{rid}")).json()
    assert detail["state"] == "delivered" and detail["outbox"]["done_at"] is not None
    assert [(r["actor"], r["count"]) for r in detail["replays"]] == [("ops", 1), ("ops", 1)]
    log = await rows(services, "SELECT actor, filters, record_ids, count FROM replay ORDER BY id")
    assert log[0].filters == {"record_ids": [str(rid)]} and log[0].record_ids == [rid]
    assert log[1].filters == {"tenant": "acme", "source": "hrmanager"}

    assert (await admin.call("POST", "/replays", json={})).status_code == 400
    assert (await admin.call("POST", "/replays", json={"filters": {}})).status_code == 400
    # A misspelt filter is refused rather than ignored (which would replay everything).
    typo = await admin.call("POST", "/replays", json={"filters": {"tennant": "acme"}})
    assert typo.status_code == 400 and "tennant" in typo.text
    missing = await admin.call("POST", f"/records/{uuid.uuid4()}/replay")
    assert missing.status_code == 404
    admin.assert_never_shown(HRM_SECRET, VENDOR_SECRET)


async def test_a_failed_delivery_is_sent_again_by_a_replay(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    fake_ats.script.extend(Step("/vendor", status=410) for _ in range(1))
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    fast = fast_settings(settings)
    await run_worker(fast)
    assert fake_ats.deliveries() == []
    letters = (await admin.call("GET", "/dead-letters", params={"stage": "delivery"})).json()
    assert [(x["record_id"], x["reason"]) for x in letters] == [(str(rid), "destination_gone")]

    result = (await admin.call("POST", f"/records/{rid}/replay")).json()
    assert (result["enrichments"], result["deliveries"]) == (1, 1)
    await run_worker(fast)
    assert len(fake_ats.deliveries()) == 1
    # The letter the replay made obsolete is closed, naming the replay.
    history = (await admin.call("GET", "/dead-letters", params={"resolved": True})).json()
    assert [(x["resolution"], x["note"]) for x in history] == [
        ("retried", f"replay {result['id']}")
    ]


async def test_dead_letters_by_cause_retried_after_a_fix_and_discarded_with_a_note(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    sr = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "expired"})
    hrm = await add_source(services, fake_ats, "hrmanager", tenant="globex")
    refused = await record_event(services, sr, "candidate.updated", {"id": "c-1"})
    missing = await record_event(services, hrm, "CandidateUpdated", {"CandidateId": "nobody"})
    fast = fast_settings(settings)
    await run_worker(fast)

    config = (await admin.call("GET", "/dead-letters", params={"kind": "configuration"})).json()
    assert [(x["record_id"], x["reason"]) for x in config] == [
        (str(refused), "credentials_refused")
    ]
    pipeline = (await admin.call("GET", "/dead-letters", params={"kind": "pipeline"})).json()
    assert [(x["record_id"], x["reason"]) for x in pipeline] == [(str(missing), "not_found")]
    assert (await admin.call("GET", "/dead-letters", params={"kind": "other"})).status_code == 400
    everything = await admin.call("POST", "/dead-letters/retry", json={})
    assert everything.status_code == 400

    # The fix: the tenant's new API key, rotated in through the API.
    [connection] = (await admin.call("GET", "/connections", params={"tenant": "acme"})).json()
    rotated = await admin.call(
        "PUT",
        f"/connections/{connection['id']}/secrets",
        json={"secrets": {"api_key": SR_TOKEN}, "merge": True},
    )
    assert rotated.status_code == 200
    retried = await admin.call(
        "POST", "/dead-letters/retry", json={"kind": "configuration", "note": "new API key"}
    )
    assert retried.json() == {"count": 1, "still_failing": 0}
    await run_worker(fast)
    assert (await admin.call("GET", f"/records/{refused}")).json()["state"] == "processed"

    discarded = await admin.call(
        "POST",
        "/dead-letters/discard",
        json={"ids": [pipeline[0]["id"]], "note": "candidate deleted at the ATS"},
    )
    assert discarded.json() == {"count": 1, "still_failing": 0}
    again = await admin.call("POST", "/dead-letters/discard", json={"ids": [pipeline[0]["id"]]})
    assert again.status_code == 409 and "already" in again.json()["error"]["message"]
    detail = (await admin.call("GET", f"/records/{missing}")).json()
    assert detail["state"] == "discarded"
    assert [(x["resolution"], x["note"]) for x in detail["dead_letters"]] == [
        ("discarded", "candidate deleted at the ATS")
    ]
    assert (await admin.call("GET", "/dead-letters")).json() == []
    admin.assert_never_shown(SR_TOKEN, "expired", HRM_SECRET)


async def test_stats_count_states_duplicates_latency_and_backlog(
    services: Services, settings: Settings, admin_key: str
) -> None:
    # Duplicates are counted best effort, each within the Redis timeout (0.5 s) or not at
    # all; a test suite loading both cores can stall Redis that long. The count's
    # arithmetic is what is tested here, so this app waits longer.
    patient = make_settings(str(settings.database_url), str(settings.redis_url), redis_timeout_s=5)
    async for client in run_app(create_app(patient)):
        await _stats_count_states_duplicates_latency_and_backlog(
            Recorder(client, admin_key), client, services
        )


async def _stats_count_states_duplicates_latency_and_backlog(
    admin: Recorder, client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    bodies = [keldair_event() for _ in range(4)]
    for body in bodies:
        assert (await post_keldair(client, body)).status_code == 200
    # The first event arrives three more times, the second once more.
    for body in (bodies[0], bodies[0], bodies[0], bodies[1]):
        again = await post_keldair(client, body)
        assert again.headers["hirehook-duplicate"] == "true"

    # Duplicates are counted after they are answered (nobody waits for the count): the
    # stats catch up within moments.
    deadline = time.monotonic() + 10
    while True:
        stats = (await admin.call("GET", "/stats", params={"tenant": "acme"})).json()
        [row] = stats["sources"]
        if row["duplicates"] == 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert (row["tenant"], row["source"], row["records"]) == ("acme", "keldair", 4)
    assert row["states"] == {"received": 4}
    assert row["duplicates"] == 4 and row["duplicate_ratio"] == pytest.approx(4 / 8)
    assert 0 <= row["ack_p50_ms"] <= row["ack_p99_ms"]
    assert row["enrichment_backlog"]["pending"] == 4
    assert row["enrichment_backlog"]["oldest_age_s"] >= 0
    assert row["delivery_backlog"] == {"pending": 0, "oldest_age_s": None}

    past = await admin.call(
        "GET", "/stats", params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"}
    )
    # Nothing received then, but the backlog is now's.
    [old] = past.json()["sources"]
    assert old["records"] == 0 and old["enrichment_backlog"]["pending"] == 4
    # Counters older than their 8 days are gone: none are read for that window.
    assert (old["duplicates"], old["duplicate_ratio"]) == (0, 0.0)
    wrong = await admin.call(
        "GET", "/stats", params={"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"}
    )
    assert wrong.status_code == 400


async def test_a_candidate_is_erased_and_the_erasure_audited_under_the_key(
    admin: Recorder, client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    forget = keldair_event(data={"id": "ap_forget", "firstName": "Grace", "jobId": "job_1"})
    keep = keldair_event(data={"id": "ap_keep", "firstName": "Alan", "jobId": "job_1"})
    for body in (forget, keep):
        assert (await post_keldair(client, body)).status_code == 200

    request = {"tenant": "acme", "source": "keldair", "candidate_id": "ap_forget"}
    response = await admin.call("POST", "/erasures", json=request)
    assert response.status_code == 201, response.text
    audit = response.json()
    assert audit["actor"] == "admin:ops" and audit["candidate_id"] == "ap_forget"
    assert audit["counts"]["record"] == 1

    page = (await admin.call("GET", "/records", params={"tenant": "acme"})).json()
    bodies = [(await admin.call("GET", f"/records/{r['id']}")).text for r in page["records"]]
    assert not any("Grace" in b for b in bodies)
    assert any("Alan" in b for b in bodies)
    # A re-delivery of the erased event is still a duplicate, with its first answer.
    again = await post_keldair(client, forget)
    assert again.status_code == 200 and again.headers["hirehook-duplicate"] == "true"

    unknown = await admin.call("POST", "/erasures", json={**request, "tenant": "nobody"})
    assert unknown.status_code == 404
    bad = await admin.call("POST", "/erasures", json={**request, "source": "nowhere"})
    assert bad.status_code == 400


async def test_subject_search_knows_each_sources_names(admin: Recorder, services: Services) -> None:
    # HR Manager names a candidate and a position; the filters say person and job.
    await add_connection(
        services,
        tenant="acme",
        source="hrmanager",
        secrets={"api_key": "k" * 32, "signing_secrets": ["ab" * 16]},
        options={"base_url": "https://api.example", "customer_alias": "acme"},
    )
    connection = await services.connections.by_tenant("acme", "hrmanager")
    assert connection is not None
    await services.intake.record(
        Event(
            connection=connection,
            dedupe_key="hrm-1",
            event_type="CandidateUpdated",
            known=True,
            payload={"CandidateId": 1001},
            raw_body=b'{"CandidateId": 1001}',
            headers={},
            subjects={"candidate": "1001", "position": "77"},
        ),
        answer_for=lambda rid: json_answer(200, {"record": str(rid)}),
        deadline=Deadline(5),
    )
    for params in ({"person": "1001"}, {"job": "77"}, {"person": "1001", "job": "77"}):
        page = (await admin.call("GET", "/records", params={"tenant": "acme", **params})).json()
        assert [r["source"] for r in page["records"]] == ["hrmanager"], params
    page = (await admin.call("GET", "/records", params={"tenant": "acme", "person": "9"})).json()
    assert page["records"] == []


async def test_a_quarantined_record_shows_what_is_missing_and_payload_fields_release_it(
    admin: Recorder,
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
) -> None:
    fake_ats.add_hrm_position("77")
    fake_ats.add_hrm_position("78")
    hrm = await add_source(services, fake_ats, "hrmanager", destination=True)
    await add_source(services, fake_ats, "hrmanager", tenant="globex")
    # Field names HR Manager might really use, none of them guessed.
    first = await post_hrmanager(client, {"Event": "PositionPublished", "Id": "77"})
    second = await post_hrmanager(client, {"Event": "PositionPublished", "Id": "78"})
    other_kind = await post_hrmanager(client, {"Event": "CandidateHired", "Ref": "9"})
    other_tenant = await post_hrmanager(
        client, {"Event": "PositionPublished", "Id": "77"}, "globex"
    )

    detail = (await admin.call("GET", f"/records/{first}")).json()
    assert detail["state"] == "quarantined"
    assert detail["quarantine"] == {
        "connection_id": hrm.id,
        "problems": [
            "position_id: missing (looked for PositionId, positionId, position_id, PositionID; "
            "name the payload's own field in options.payload_fields.position_id)"
        ],
        "missing": {"position_id": ["PositionId", "positionId", "position_id", "PositionID"]},
        "body_fields": ["Event", "Id"],
    }

    answer = await admin.call(
        "POST",
        f"/connections/{hrm.id}/payload-fields",
        json={"payload_fields": {"event": ["Event"], "position_id": ["Id"]}},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["reparsed"], result["still_quarantined"]) == (2, 1)
    options = result["connection"]["options"]
    assert options["payload_fields"] == {"event": ["Event"], "position_id": ["Id"]}
    assert options["base_url"] == fake_ats.hrm_base  # the other options are kept

    released = (await admin.call("GET", f"/records/{first}")).json()
    assert (released["state"], released["subjects"]) == ("received", {"position": "77"})
    assert released["quarantine"] is None
    assert [(x["resolution"], x["note"]) for x in released["dead_letters"]] == [
        ("retried", "payload_fields set")
    ]
    # Still quarantined: it now names what the new mapping still lacks.
    stuck = (await admin.call("GET", f"/records/{other_kind}")).json()
    assert stuck["state"] == "quarantined"
    assert list(stuck["quarantine"]["missing"]) == ["candidate_id"]
    # Another connection's quarantined record is left alone.
    untouched = (await admin.call("GET", f"/records/{other_tenant}")).json()
    assert untouched["state"] == "quarantined"
    assert [x["resolution"] for x in untouched["dead_letters"]] == [None]

    # Released records go on to enrichment and delivery.
    await run_worker(fast_settings(settings))
    for record_id in (first, second):
        assert (await admin.call("GET", f"/records/{record_id}")).json()["state"] == "delivered"
    delivered = sorted(
        orjson.loads(c.body)["data"]["subjects"]["position"] for c in fake_ats.deliveries()
    )
    assert delivered == ["77", "78"]

    # An empty list goes back to the guesses; nothing is left to re-parse for the others.
    reset = await admin.call(
        "POST", f"/connections/{hrm.id}/payload-fields", json={"payload_fields": {"event": []}}
    )
    assert reset.status_code == 200
    assert reset.json()["connection"]["options"]["payload_fields"] == {"position_id": ["Id"]}
    assert (reset.json()["reparsed"], reset.json()["still_quarantined"]) == (0, 1)


async def test_payload_fields_refuse_what_the_source_refuses(
    admin: Recorder, services: Services, fake_ats: FakeATS
) -> None:
    hrm = await add_source(services, fake_ats, "hrmanager")
    sr = await add_source(services, fake_ats, "smartrecruiters", tenant="globex")
    path = f"/connections/{hrm.id}/payload-fields"
    unknown = await admin.call("POST", path, json={"payload_fields": {"applicant_id": ["X"]}})
    assert unknown.status_code == 400
    assert "'applicant_id' is not one of" in unknown.json()["error"]["message"]
    for name in ("a..b", "Id\u0000", ""):
        bad = await admin.call("POST", path, json={"payload_fields": {"position_id": [name]}})
        assert bad.status_code == 400, name
        assert "payload_fields.position_id" in bad.json()["error"]["message"]
    empty = await admin.call("POST", path, json={"payload_fields": {}})
    assert empty.status_code == 400
    other = await admin.call(
        "POST", f"/connections/{sr.id}/payload-fields", json={"payload_fields": {"event": ["E"]}}
    )
    assert other.status_code == 400 and "payload_fields" in other.json()["error"]["message"]
    missing = await admin.call(
        "POST", "/connections/999999/payload-fields", json={"payload_fields": {"event": ["E"]}}
    )
    assert missing.status_code == 404
    # Nothing was changed by a refusal.
    shown = (await admin.call("GET", f"/connections/{hrm.id}")).json()
    assert "payload_fields" not in shown["options"]


async def test_a_record_whose_delivery_gave_up_is_a_dead_letter_in_lists_filters_and_stats(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    rid = await dead_lettered_delivery(services, settings, fake_ats)

    [listed] = (await admin.call("GET", "/records")).json()["records"]
    assert (listed["id"], listed["state"]) == (str(rid), "dead_letter")
    found = (await admin.call("GET", "/records", params={"state": "dead_letter"})).json()
    assert [r["id"] for r in found["records"]] == [str(rid)]
    processed = (await admin.call("GET", "/records", params={"state": "processed"})).json()
    assert processed["records"] == []
    assert (await admin.call("GET", f"/records/{rid}")).json()["state"] == "dead_letter"
    [row] = (await admin.call("GET", "/stats")).json()["sources"]
    assert row["states"] == {"dead_letter": 1}

    # Discarded, it says so; retried and acknowledged, it is delivered.
    letter = (await admin.call("GET", "/dead-letters")).json()[0]["id"]
    retried = await admin.call("POST", "/dead-letters/retry", json={"ids": [letter]})
    assert retried.json()["count"] == 1
    await run_worker(fast_settings(settings))
    assert (await admin.call("GET", f"/records/{rid}")).json()["state"] == "delivered"
    [row] = (await admin.call("GET", "/stats")).json()["sources"]
    assert row["states"] == {"delivered": 1}


async def test_an_unknown_tenant_or_state_is_refused_not_answered_with_nothing(
    admin: Recorder, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    assert (await admin.call("GET", "/records", params={"tenant": "acme"})).status_code == 200
    unknown = await admin.call("GET", "/records", params={"tenant": "nosuch"})
    assert unknown.status_code == 404 and "nosuch" in unknown.text
    weird = await admin.call("GET", "/records", params={"state": "weird"})
    assert weird.status_code == 400
    for state in ("received", "processed", "delivered", "dead_letter", "quarantined"):
        assert state in weird.text
    stats = await admin.call("GET", "/stats", params={"tenant": "nosuch"})
    assert stats.status_code == 404


async def test_replaying_a_quarantined_record_is_refused_with_what_to_do_instead(
    admin: Recorder, client: httpx.AsyncClient, services: Services, fake_ats: FakeATS
) -> None:
    await add_source(services, fake_ats, "hrmanager", destination=True)
    stuck = await post_hrmanager(client, {"Event": "CandidateHired", "Ref": "9"})

    refused = await admin.call("POST", f"/records/{stuck}/replay")
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "quarantined" in message and "set-payload-fields" in message
    assert await rows(services, "SELECT 1 FROM replay") == []

    [letter] = (await admin.call("GET", "/dead-letters")).json()
    retried = await admin.call("POST", "/dead-letters/retry", json={"ids": [letter["id"]]})
    assert retried.json() == {"count": 1, "still_failing": 1}
    assert (await admin.call("GET", f"/records/{stuck}")).json()["state"] == "quarantined"
