"""SmartRecruiters native webhooks: the activation handshake, signed notifications (several
live keys, rotation, tolerance), the 5 s acknowledgement under a stalled database, dedupe by
event-id, subjects, quarantine, enrichment, and the subscribe CLI against a fake API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from app.admin.subscriptions import list_subscriptions
from app.admin.tenants_file import apply_tenants, read_tenants_file
from app.cli.smartrecruiters import (
    CommandError,
    parse_events,
    rotate_key,
    subscribe,
    unsubscribe,
)
from app.clients.smartrecruiters_webhooks import SubscriptionApiError
from app.intake.core import Deadline, Event, json_answer
from app.main import create_app
from app.platform.settings import Settings
from app.schemas.smartrecruiters import parse
from app.schemas.smartrecruiters_config import with_new_key
from app.services import Services
from app.sources.smartrecruiters import reparse
from app.store import subscriptions
from app.verifiers import VerificationError
from app.verifiers import smartrecruiters as srv
from tests.support.app import add_connection, arq_queue, run_app
from tests.support.fake_ats import SR_TOKEN, FakeATS
from tests.support.fake_smartrecruiters import (
    FakeSmartRecruiters,
    serve_asgi,
    serve_fake,
    sr_headers,
)
from tests.support.paths import REPO
from tests.support.proxy import FaultProxy, via_proxy
from tests.support.smartrecruiters import KEY_A, URL, cli, post
from tests.support.workers import add_source, fast_settings, rows, run_worker, worker_env

KEY_B = "sr-signing-key-bravo-000000000000000002"
# developers.smartrecruiters.com/reference/subscriptionsgeneratesecretkey-1
REFERENCE_SIGNATURE = "2e9291f10d44ca10204a4cd81b05d73b6a316b2b605d4e2e0e0b37b40198ce1f"
DEMO = REPO / "demo" / "tenants.toml"


@pytest.fixture
async def acme(services: Services) -> Services:
    await add_connection(
        services,
        tenant="acme",
        source="smartrecruiters",
        secrets={"signing_keys": [KEY_A, KEY_B]},
    )
    return services


async def records(services: Services) -> list[Any]:
    return await rows(
        services,
        "SELECT r.*, (SELECT count(*) FROM outbox o WHERE o.record_id = r.id) AS jobs "
        "FROM record r ORDER BY received_at",
    )


async def connection_id(services: Services, tenant: str = "acme") -> int:
    info = await services.connections.by_tenant(tenant, "smartrecruiters")
    assert info is not None
    return info.id


async def open_activation(services: Services, *, window_s: float = 60) -> None:
    cid = await connection_id(services)
    async with services.engine.begin() as conn:
        made = await subscriptions.insert_pending(
            conn,
            connection_id=cid,
            external_id="s1",
            callback_url="https://hirehook.example/v1/smartrecruiters/acme/events",
            events=[{"name": "candidate.created", "version": "v201910"}],
            secrets=services.cipher.encrypt_json({}),
            window_s=window_s,
        )
    assert made is not None


# --- the verifier, on its own -------------------------------------------------------------


def test_the_reference_example_verifies() -> None:
    # developers.smartrecruiters.com/reference/subscriptionsgeneratesecretkey-1: key
    # HeBVky2bccvvkcXPimH8c and the published signature. The page renders the link without its
    # angle brackets and the body with a space; this is the request that gives that signature.
    headers = {
        "smartrecruiters-signature": "v1=" + REFERENCE_SIGNATURE,
        "smartrecruiters-timestamp": "1574080897",
        "event-id": "123",
        "link": "<http://smartrecruiters.com/endpoint>; rel=self",
        "event-name": "application.created",
        "event-version": "v201910",
    }
    body = b'{"job_id":"jid","candidate_id":"cid"}'
    key = srv.SigningKey(b"HeBVky2bccvvkcXPimH8c")
    srv.verify(headers, [body], [key], now=1574080897)
    with pytest.raises(VerificationError):
        srv.verify(headers, [body + b" "], [key], now=1574080897)


def test_several_signatures_and_unknown_schemes() -> None:
    body = b'{"id":"c-1"}'
    headers = sr_headers([KEY_B], body, event_name="candidate.created", event_id="e1")
    mine = headers["smartrecruiters-signature"]
    headers["smartrecruiters-signature"] = f"v2=abc; v1=00ff ;{mine.upper()}"
    now = time.time()
    srv.verify(headers, [body], [srv.SigningKey(KEY_B.encode())], now=now)
    with pytest.raises(VerificationError, match="no signature matched"):
        srv.verify(headers, [body], [srv.SigningKey(KEY_A.encode())], now=now)
    headers["smartrecruiters-signature"] = "v2=abc"
    with pytest.raises(VerificationError, match="no v1 signature"):
        srv.verify(headers, [body], [srv.SigningKey(KEY_B.encode())], now=now)


def test_rotation_keeps_the_previous_key_for_24_hours() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    stored = with_new_key({}, "first", start)
    stored = with_new_key(stored, "second", start + timedelta(hours=1))
    first, second = stored["signing_keys"]
    assert first["expires_at"] == (start + timedelta(hours=25)).isoformat()
    assert second["expires_at"] is None
    # A third key a day later drops the first (expired) and gives the second its 24 hours.
    stored = with_new_key(stored, "third", start + timedelta(hours=26))
    assert [k["key"] for k in stored["signing_keys"]] == ["second", "third"]
    assert stored["signing_keys"][0]["expires_at"] == (start + timedelta(hours=50)).isoformat()


def test_subjects_and_problems_from_the_body() -> None:
    application = parse({"job_id": "j-1", "candidate_id": "c-1"}, "application.created")
    assert application.known and not application.problems
    assert dict(application.subjects) == {"person": "c-1", "job": "j-1", "application": "c-1:j-1"}
    camel = parse({"jobId": 7, "candidateId": "c-7", "extra": True}, "application.status.updated")
    assert dict(camel.subjects) == {"person": "c-7", "job": "7", "application": "c-7:7"}
    assert dict(parse({"id": "j-9"}, "job.updated").subjects) == {"job": "j-9"}
    missing = parse({"candidate_id": "c-1"}, "application.created")
    assert missing.problems and "job_id" in missing.problems[0]
    assert parse([1, 2], "candidate.updated").problems == ("the body is not a JSON object",)
    unknown = parse({"id": "o-1"}, "offer.created")
    assert (unknown.event_type, unknown.known, unknown.problems) == ("offer.created", False, ())
    assert parse({"id": "c-1"}, "").problems == ("the event-name header is missing",)
    # The re-parser reads the event's name from the stored headers.
    again = reparse({"id": "c-3"}, {"event-name": "candidate.deleted"}, {})
    assert dict(again.subjects) == {"person": "c-3"}


# --- the handshake -------------------------------------------------------------------------


async def test_expected_handshake_is_echoed_and_its_secret_stored_encrypted(
    client: httpx.AsyncClient, acme: Services
) -> None:
    await open_activation(acme)
    secret = "hook-secret-4jn8fs9011jj8"
    response = await client.post(URL, headers={"X-Hook-Secret": secret})
    assert response.status_code == 200
    assert response.headers["x-hook-secret"] == secret
    [row] = await rows(acme, "SELECT * FROM webhook_subscription")
    assert (row.status, row.activation_expires_at) == ("active", None)
    assert row.activated_at is not None
    assert secret.encode() not in bytes(row.secrets)
    assert acme.cipher.decrypt_json(row.secrets) == {"hook_secret": secret}
    # A second handshake finds no activation waiting: nobody can replace the secret.
    again = await client.post(URL, headers={"X-Hook-Secret": "attacker-secret"})
    assert again.status_code == 401
    assert "x-hook-secret" not in again.headers
    [row] = await rows(acme, "SELECT secrets FROM webhook_subscription")
    assert acme.cipher.decrypt_json(row.secrets) == {"hook_secret": secret}
    # The handshake is never recorded as an event.
    assert await records(acme) == []


@pytest.mark.parametrize("case", ["nothing pending", "window passed", "unknown tenant"])
async def test_unexpected_handshake_is_refused(
    client: httpx.AsyncClient, acme: Services, case: str
) -> None:
    url = URL
    if case == "window passed":
        await open_activation(acme, window_s=-1)
    elif case == "unknown tenant":
        await open_activation(acme)
        url = "/v1/smartrecruiters/nobody/events"
    response = await client.post(url, headers={"X-Hook-Secret": "s3cr3t"})
    assert response.status_code == 401
    assert "x-hook-secret" not in response.headers
    assert response.json()["error"]["code"] == "unauthorized"
    statuses = [r.status for r in await rows(acme, "SELECT status FROM webhook_subscription")]
    assert "active" not in statuses


async def test_a_held_refusal_past_the_deadline_is_still_a_401(
    acme: Services, settings: Settings
) -> None:
    """The brute-force guard may hold a refusal longer than SmartRecruiters's deadline; the
    answer is then late, but it is the 401 it was, never a 503 that invites a retry."""
    held = settings.model_copy(
        update={
            "request_deadline_s": 0.3,
            "auth_failure_delay_s": 0.5,
            "auth_failure_delay_after": 0,
        }
    )
    async for client in run_app(create_app(held)):
        started = time.monotonic()
        response = await post(client, {"id": "c-1"}, keys=["not-a-key-of-this-tenant-000000"])
        assert response.status_code == 401, response.text
        assert time.monotonic() - started >= 0.75 * 0.5


# --- signatures ----------------------------------------------------------------------------


async def test_each_of_two_live_keys_verifies(client: httpx.AsyncClient, acme: Services) -> None:
    for keys in ([KEY_A], [KEY_B], [KEY_B, KEY_A], ["not-a-key-of-this-tenant-000000", KEY_B]):
        response = await post(client, {"id": "c-1"}, keys=keys)
        assert response.status_code == 202, (keys, response.text)
        assert response.json()["status"] == "accepted"
    assert len(await records(acme)) == 4


async def test_expired_old_key_is_refused_and_current_key_accepted(
    client: httpx.AsyncClient, services: Services
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    await add_connection(
        services,
        tenant="acme",
        source="smartrecruiters",
        secrets={
            "signing_keys": [
                {"key": "expired-key-000000000000000000000000", "expires_at": past},
                {"key": KEY_B, "expires_at": soon},
                KEY_A,
            ]
        },
    )
    expired = await post(client, {"id": "c-1"}, keys=["expired-key-000000000000000000000000"])
    assert expired.status_code == 401
    assert (await post(client, {"id": "c-1"}, keys=[KEY_B])).status_code == 202
    assert (await post(client, {"id": "c-1"}, keys=[KEY_A])).status_code == 202


@pytest.mark.parametrize("hours_ago", [23, 25])
async def test_subscription_keys_rotated_at_smartrecruiters(
    client: httpx.AsyncClient, services: Services, hours_ago: int
) -> None:
    await add_connection(services, tenant="acme", source="smartrecruiters", secrets={})
    await open_activation(services)
    assert (await client.post(URL, headers={"X-Hook-Secret": "h"})).status_code == 200
    rotated = datetime.now(UTC) - timedelta(hours=hours_ago)
    stored = with_new_key({"hook_secret": "h"}, "old-generated-key", rotated - timedelta(days=3))
    stored = with_new_key(stored, "new-generated-key", rotated)
    async with services.engine.begin() as conn:
        await subscriptions.set_secrets(conn, 1, services.cipher.encrypt_json(stored))
    old = await post(client, {"id": "c-1"}, keys=["old-generated-key"])
    assert old.status_code == (202 if hours_ago < 24 else 401)
    assert (await post(client, {"id": "c-1"}, keys=["new-generated-key"])).status_code == 202


async def test_a_tenant_without_keys_accepts_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(services, tenant="acme", source="smartrecruiters", secrets={})
    response = await post(client, {"id": "c-1"})
    assert response.status_code == 401
    assert await records(services) == []


# Two seconds past the tolerance: int(time.time()) + 301 can be just over 300 s ahead of the
# moment of truncation and inside the tolerance by the time the server reads the clock.
@pytest.mark.parametrize("offset_s", [-302, 302])
async def test_stale_or_future_timestamp_is_refused(
    client: httpx.AsyncClient, acme: Services, offset_s: int
) -> None:
    response = await post(client, {"id": "c-1"}, timestamp=int(time.time()) + offset_s)
    assert response.status_code == 401
    ok = await post(client, {"id": "c-1"}, timestamp=int(time.time()) - 250)
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "tamper",
    [
        "body",
        "event-id",
        "event-name",
        "event-version",
        "link",
        "smartrecruiters-timestamp",
        "drop link",
        "no signature",
    ],
)
async def test_tampered_body_or_signed_header_is_refused(
    client: httpx.AsyncClient, acme: Services, tamper: str
) -> None:
    body = orjson.dumps({"id": "c-1"})
    headers = sr_headers([KEY_A], body, event_name="candidate.created", event_id="e-1")
    if tamper == "body":
        body = orjson.dumps({"id": "c-2"})
    elif tamper == "drop link":
        del headers["link"]
    elif tamper == "no signature":
        del headers["smartrecruiters-signature"]
    elif tamper == "smartrecruiters-timestamp":
        headers[tamper] = str(int(headers[tamper]) - 1)
    else:
        headers[tamper] += "x"
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    assert await records(acme) == []


async def test_missing_headers_count_as_empty_strings(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = orjson.dumps({"id": "c-1"})
    headers = sr_headers([KEY_A], body, event_name="candidate.created", event_id="e-1", link="")
    del headers["link"]
    assert (await client.post(URL, content=body, headers=headers)).status_code == 202


async def test_unknown_tenant_answers_like_a_bad_signature(
    client: httpx.AsyncClient, acme: Services
) -> None:
    unknown = await post(client, {"id": "c-1"}, url="/v1/smartrecruiters/nobody/events")
    wrong = await post(client, {"id": "c-1"}, keys=["wrong-key-0000000000000000000000000"])
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    assert KEY_A not in unknown.text and KEY_A not in wrong.text


# --- recording -----------------------------------------------------------------------------


async def test_same_event_id_twice_is_one_record_with_the_same_answer(
    client: httpx.AsyncClient, acme: Services
) -> None:
    first = await post(client, {"id": "c-1"}, event_id="evt-1")
    # A retry is signed again, later, possibly with another live key.
    second = await post(client, {"id": "c-1"}, event_id="evt-1", keys=[KEY_B])
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    assert first.json()["event_id"] == "evt-1"
    assert "hirehook-duplicate" not in first.headers
    assert second.headers["hirehook-duplicate"] == "true"
    [record] = await records(acme)
    assert (record.dedupe_key, record.event_type, record.known, record.jobs) == (
        "evt-1",
        "candidate.created",
        True,
        1,
    )
    assert record.subjects == {"person": "c-1"}
    assert record.headers["event-version"] == "v201910"
    assert len(await arq_queue(acme.queue.redis)) == 1


async def test_application_event_records_its_subjects(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(
        client, {"job_id": "j-2", "candidate_id": "c-1"}, event_name="application.created"
    )
    assert response.status_code == 202
    [record] = await records(acme)
    assert record.subjects == {"person": "c-1", "job": "j-2", "application": "c-1:j-2"}
    assert record.state == "received" and record.jobs == 1


async def test_unknown_event_is_recorded_not_dispatched(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(client, {"id": "o-1"}, event_name="offer.created")
    assert response.status_code == 202
    [record] = await records(acme)
    assert (record.event_type, record.known, record.state, record.jobs) == (
        "offer.created",
        False,
        "received",
        0,
    )
    assert await arq_queue(acme.queue.redis) == []


@pytest.mark.parametrize(
    ("event_name", "body", "problem"),
    [
        ("application.created", b'{"candidate_id":"c-1"}', "job_id"),
        ("candidate.updated", b'{"id":""}', "id"),
        ("candidate.updated", b"[1,2]", "not a JSON object"),
        ("candidate.updated", b"{not json", "not valid UTF-8 JSON"),
    ],
)
async def test_unexpected_shape_is_quarantined_not_refused(
    client: httpx.AsyncClient, acme: Services, event_name: str, body: bytes, problem: str
) -> None:
    response = await post(client, body, event_name=event_name, event_id="evt-odd")
    assert response.status_code == 202
    [record] = await records(acme)
    assert (record.state, record.known, record.jobs) == ("quarantined", False, 0)
    assert bytes(record.raw_body) == body
    [letter] = await rows(acme, "SELECT stage, kind, reason, detail FROM dead_letter")
    assert (letter.stage, letter.kind, letter.reason) == (
        "intake",
        "configuration",
        "unexpected_shape",
    )
    assert problem in letter.detail
    assert await arq_queue(acme.queue.redis) == []


# --- the 5 s acknowledgement ----------------------------------------------------------------


@pytest.mark.parametrize("warm", [True, False])
async def test_stalled_database_gives_a_fast_503_then_the_retry_is_recorded_once(
    services: Services, settings: Settings, pg_proxy: FaultProxy, warm: bool
) -> None:
    await add_connection(
        services, tenant="acme", source="smartrecruiters", secrets={"signing_keys": [KEY_A]}
    )
    # Database timeouts far above SmartRecruiters's 5 s: only the route's deadline can answer.
    slow = via_proxy(settings, pg_proxy).model_copy(
        update={
            "db_connect_timeout_s": 20.0,
            "db_statement_timeout_s": 20.0,
            "db_pool_timeout_s": 20.0,
        }
    )
    body = orjson.dumps({"job_id": "j-1", "candidate_id": "c-1"})

    def headers() -> dict[str, str]:
        return sr_headers([KEY_A], body, event_name="application.created", event_id="evt-slow")

    async for client in run_app(create_app(slow)):
        if warm:
            warm_up = await post(client, {"id": "c-0"}, event_id="evt-warm")
            assert warm_up.status_code == 202
        pg_proxy.set_mode("stall")
        for _ in range(2):
            started = time.monotonic()
            response = await client.post(URL, content=body, headers=headers())
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            # The route's deadline is 4 s; SmartRecruiters's own wait, 5 s, is the bound.
            assert elapsed < 5.0, f"answered after {elapsed:.2f} s; SmartRecruiters waits 5 s"
        pg_proxy.set_mode("open")
        retry = await client.post(URL, content=body, headers=headers())
        assert retry.status_code == 202
        assert "hirehook-duplicate" not in retry.headers
        again = await client.post(URL, content=body, headers=headers())
        assert again.headers["hirehook-duplicate"] == "true"
    keys = [r.dedupe_key for r in await records(services)]
    assert keys == (["evt-warm", "evt-slow"] if warm else ["evt-slow"])


# --- enrichment ----------------------------------------------------------------------------


async def test_worker_enriches_from_the_subjects_derived_at_intake(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1", jobs=["j-1", "j-2"])
    fake_ats.add_sr_job("j-2")
    fake_ats.add_sr_candidate("c-9")
    connection = await add_source(
        services,
        fake_ats,
        "smartrecruiters",
        secrets={"api_key": SR_TOKEN, "signing_keys": [KEY_A]},
    )
    response = await post(
        client, {"jobId": "j-2", "candidateId": "c-1"}, event_name="application.status.updated"
    )
    assert response.status_code == 202
    # A record whose subjects and payload disagree: the subjects are what the worker uses.
    outcome = await services.intake.record(
        Event(
            connection=connection,
            dedupe_key="evt-subjects",
            event_type="candidate.updated",
            known=True,
            payload={"id": "c-payload"},
            raw_body=b"{}",
            headers={},
            subjects={"person": "c-9"},
        ),
        answer_for=lambda rid: json_answer(202, {"record_id": str(rid)}),
        deadline=Deadline(5),
    )
    await services.intake.publish(outcome, known=True)
    await run_worker(fast_settings(settings))

    assert len(fake_ats.calls_to("/sr/candidates/c-1")) == 1
    assert len(fake_ats.calls_to("/sr/jobs/j-2")) == 1
    assert len(fake_ats.calls_to("/sr/candidates/c-9")) == 1
    assert fake_ats.calls_to("/sr/candidates/c-payload") == []
    candidates = await rows(services, "SELECT external_id FROM candidate ORDER BY 1")
    assert [c.external_id for c in candidates] == ["c-1", "c-9"]
    [application] = await rows(services, "SELECT external_id, status FROM application")
    assert (application.external_id, application.status) == ("c-1:j-2", "IN_REVIEW")
    states = await rows(services, "SELECT DISTINCT state FROM record")
    assert [s.state for s in states] == ["processed"]


# --- the subscribe CLI and the sample sender, end to end --------------------------------------


@pytest.fixture
async def sr_api() -> AsyncIterator[FakeSmartRecruiters]:
    with serve_fake() as fake:
        yield fake


async def test_subscribe_activates_keys_and_rotates_against_the_fake_api(
    services: Services, settings: Settings, sr_api: FakeSmartRecruiters
) -> None:
    await add_connection(
        services,
        tenant="acme",
        source="smartrecruiters",
        secrets={"api_key": SR_TOKEN},
        options={"base_url": sr_api.url},
    )
    await add_connection(services, tenant="globex", source="smartrecruiters", secrets={})
    env = worker_env(settings)
    with serve_asgi(create_app(settings), lifespan="on") as api:
        callback = f"{api}/v1/smartrecruiters/acme/events"
        code, out, err = await cli(
            "smartrecruiters", "subscribe", "acme",
            "--events", "candidate.created,application.created@v2",
            "--callback-url", callback,
            env=env,
        )  # fmt: skip
        assert code == 0, err
        [sub] = sr_api.subscriptions.values()
        assert (sub.status, sub.callback_url) == ("active", callback)
        assert sub.events == [
            {"name": "candidate.created", "version": "v201910"},
            {"name": "application.created", "version": "v2"},
        ]
        assert f"subscription {sub.id} active" in out
        [key] = sub.live_keys()
        assert key not in out + err
        [row] = await rows(services, "SELECT * FROM webhook_subscription")
        assert (row.external_id, row.status) == (sub.id, "active")
        assert key.encode() not in bytes(row.secrets)
        stored = services.cipher.decrypt_json(row.secrets)
        assert stored["hook_secret"] == sub.hook_secret
        assert [k["key"] for k in stored["signing_keys"]] == [key]

        # SmartRecruiters now signs with the generated key.
        first = await asyncio.to_thread(
            sr_api.notify, sub.id, "candidate.created", {"id": "c-1"}, event_id="e2e-1"
        )
        assert first.status_code == 202, first.text

        code, out, err = await cli("smartrecruiters", "rotate-key", "acme", env=env)
        assert code == 0, err
        old, new = (k.value for k in sub.keys)
        async with httpx.AsyncClient(timeout=10) as http:
            for keys in ([old], [new], [old, new]):
                body = orjson.dumps({"id": "c-2"})
                headers = sr_headers(
                    keys, body, event_name="candidate.updated", event_id=f"e2e-{keys}"
                )
                answer = await http.post(callback, content=body, headers=headers)
                assert answer.status_code == 202, (keys, answer.text)
        [listed] = await list_subscriptions(services, tenant="acme")
        assert (listed.status, listed.live_keys) == ("active", 2)
        assert old not in str(listed) and new not in str(listed)

        # A callback URL that is not this tenant's: the handshake is refused, nothing activates.
        code, out, err = await cli(
            "smartrecruiters", "subscribe", "acme",
            "--callback-url", f"{api}/v1/smartrecruiters/globex/events",
            env=env,
        )  # fmt: skip
        assert code == 1
        assert "refused to activate the subscription" in err
        statuses = await rows(services, "SELECT status FROM webhook_subscription ORDER BY id")
        assert [s.status for s in statuses] == ["active", "failed"]
        assert sr_api.handshakes[-1].status_code == 401  # type: ignore[union-attr]

        await unsubscribe(services, tenant="acme", subscription=sub.id)
        assert sub.id not in sr_api.subscriptions
        gone = await asyncio.to_thread(
            sr_api_notify_as, callback, [new], "candidate.updated", "e2e-after-delete"
        )
        assert gone.status_code == 401
    recorded = {r.dedupe_key for r in await records(services)}
    assert len(recorded) == 4 and "e2e-1" in recorded


def sr_api_notify_as(url: str, keys: list[str], event_name: str, event_id: str) -> httpx.Response:
    body = orjson.dumps({"id": "c-3"})
    headers = sr_headers(keys, body, event_name=event_name, event_id=event_id)
    return httpx.post(url, content=body, headers=headers, timeout=10)


async def test_subscribe_refuses_a_connection_without_credentials(services: Services) -> None:
    await add_connection(services, tenant="acme", source="smartrecruiters", secrets={})
    with pytest.raises(SubscriptionApiError, match="no SmartRecruiters credential"):
        await subscribe(
            services,
            tenant="acme",
            callback_url="https://h.example/x",
            events=parse_events("candidate.created", "v201910"),
            window_s=60,
        )
    with pytest.raises(CommandError, match="no enabled smartrecruiters connection"):
        await rotate_key(services, tenant="nobody", subscription=None)
    assert await rows(services, "SELECT id FROM webhook_subscription") == []


async def test_one_activation_at_a_time(services: Services, closed_port: int) -> None:
    # The API is never called: the open activation is found first.
    await add_connection(
        services,
        tenant="acme",
        source="smartrecruiters",
        secrets={"api_key": SR_TOKEN},
        options={"base_url": f"http://127.0.0.1:{closed_port}"},
    )
    await open_activation(services)
    with pytest.raises(CommandError, match="another activation"):
        await subscribe(
            services,
            tenant="acme",
            callback_url="https://h.example/x",
            events=parse_events("candidate.created@v1", "v201910"),
            window_s=60,
        )
    [row] = await rows(services, "SELECT status FROM webhook_subscription")
    assert row.status == "pending"


async def test_send_posts_signed_samples_the_demo_accepts(
    services: Services, settings: Settings
) -> None:
    await apply_tenants(read_tenants_file(DEMO), engine=services.engine, cipher=services.cipher)
    env = worker_env(settings)
    with serve_asgi(create_app(settings), lifespan="on") as api:
        args = ("send", "smartrecruiters", "--url", api, "--event-id", "demo-1")
        first = await cli(*args, env=env)
        again = await cli(*args, env=env)
    assert first[0] == 0 and first[1].startswith("202 "), first
    assert again[1] == first[1]
    [record] = await records(services)
    assert (record.dedupe_key, record.event_type) == ("demo-1", "application.created")
    assert record.subjects == {
        "person": "cand-1001",
        "job": "job-42",
        "application": "cand-1001:job-42",
    }
