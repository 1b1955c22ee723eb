"""Cloud Elements event notifications: signed callbacks, one record per event object."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from app.admin.tenants_file import (
    ConnectionSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
    read_tenants_file,
)
from app.cli import cli
from app.dev.demo import DEMO_TENANTS
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from app.sources import REGISTRY
from app.sources.cloudelements import sample
from app.verifiers import VerificationError
from app.verifiers import cloudelements as signatures
from tests.support.app import add_connection, arq_queue, make_settings, run_app
from tests.support.cloudelements import KEY, OTHER_KEY, URL, event, notification, sign
from tests.support.workers import rows


async def post(
    client: httpx.AsyncClient,
    payload: dict[str, Any] | bytes,
    *,
    key: str = KEY,
    url: str = URL,
    header: str = "Elements-Webhook-Signature",
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return await client.post(
        url, content=body, headers={header: sign(body, key), "content-type": "application/json"}
    )


@pytest.fixture
async def acme(services: Services) -> Services:
    await add_connection(
        services, tenant="acme", source="cloudelements", secrets={"signature_keys": [KEY]}
    )
    return services


async def records(services: Services) -> list[Any]:
    return await rows(
        services,
        "SELECT r.id, r.event_type, r.known, r.state, r.subjects, r.payload, r.raw_body, "
        "r.dedupe_key, d.reason, d.detail FROM record r "
        "LEFT JOIN dead_letter d ON d.record_id = r.id ORDER BY r.payload->>'index', r.id",
    )


def test_the_documented_signature_vector() -> None:
    # Cloud Elements' "Hash Verification" guide: this key over this text gives this header.
    body = b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>"
    expected = "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="
    assert signatures.signature(body, b"MySecretEventSignatureKey") == expected
    signatures.verify(expected, [body], [b"MySecretEventSignatureKey"])
    with pytest.raises(VerificationError):
        signatures.verify(expected, [body + b" "], [b"MySecretEventSignatureKey"])
    with pytest.raises(VerificationError):
        signatures.verify(expected[len("sha256=") :], [body], [b"MySecretEventSignatureKey"])


async def test_a_signed_notification_becomes_one_record_per_event_object(
    client: httpx.AsyncClient, acme: Services
) -> None:
    payload = notification(
        event("c-1", updatedDate="2026-06-01T09:00:00.000Z"),
        event("c-2", "CREATED"),
        event("c-3", updatedDate="2026-06-01T09:05:00.000Z"),
    )
    response = await post(client, payload)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["quarantined"] == 0
    assert [r["duplicate"] for r in answer["records"]] == [False] * 3
    assert response.headers["hirehook-record-id"] == ",".join(
        r["record_id"] for r in answer["records"]
    )
    found = await records(acme)
    assert [(r.event_type, r.known, r.state, r.subjects) for r in found] == [
        ("candidates.updated", True, "received", {"person": "c-1"}),
        ("candidates.created", True, "received", {"person": "c-2"}),
        ("candidates.updated", True, "received", {"person": "c-3"}),
    ]
    # Each record keeps its event object and the notification's context, not the raw vendor
    # body that every split notification repeats; the bytes as signed stay in raw_body.
    assert found[0].payload["event"]["objectId"] == "c-1"
    assert found[0].payload["notification"]["eventId"] == "ev-1"
    assert "raw" not in found[0].payload["notification"]
    assert bytes(found[0].raw_body) == orjson.dumps(payload)
    assert len(await arq_queue(acme.queue.redis)) == 3


async def test_wrong_or_missing_signature_and_unknown_tenant_get_the_same_401(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = orjson.dumps(notification(event("c-1")))
    wrong_key = await post(client, body, key=OTHER_KEY)
    missing = await client.post(URL, content=body)
    other_body = await client.post(
        URL, content=body, headers={"Elements-Webhook-Signature": sign(body + b"\n")}
    )
    hex_form = await client.post(
        URL,
        content=body,
        headers={
            "Elements-Webhook-Signature": "sha256="
            + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
        },
    )
    unknown = await post(client, body, url="/v1/cloud-elements/nobody/events")
    wrong_source = await post(client, body, url="/v1/keldair/acme/events")

    for response in (wrong_key, missing, other_body, hex_form, unknown):
        assert response.status_code == 401
        assert response.json() == wrong_key.json()
    assert wrong_source.status_code == 401
    assert KEY not in wrong_key.text
    assert await records(acme) == []


async def test_a_duplicate_notification_records_nothing_new(
    client: httpx.AsyncClient, acme: Services
) -> None:
    payload = notification(event("c-1", updatedDate="2026-06-01T09:00:00.000Z"), event("c-2"))
    first = await post(client, payload)
    await acme.queue.redis.flushdb()
    again = await post(client, payload)

    assert again.status_code == 200
    assert [r["duplicate"] for r in again.json()["records"]] == [True, True]
    assert [r["record_id"] for r in again.json()["records"]] == [
        r["record_id"] for r in first.json()["records"]
    ]
    assert again.headers["hirehook-duplicate"] == "true"
    assert len(await records(acme)) == 2
    assert await arq_queue(acme.queue.redis) == []

    # The same change polled again by Cloud Elements (another notification, same updated
    # date) is the same record; a later change of the object is a new one.
    repolled = notification(
        event("c-1", updatedDate="2026-06-01T09:00:00.000Z"),
        event("c-1", updatedDate="2026-06-01T10:00:00.000Z"),
        event_id="ev-2",
    )
    third = await post(client, repolled)
    assert [r["duplicate"] for r in third.json()["records"]] == [True, False]
    assert len(await records(acme)) == 3


async def test_a_malformed_event_object_is_quarantined_and_the_rest_recorded(
    client: httpx.AsyncClient, acme: Services
) -> None:
    payload = notification(
        event("c-1"), {"objectType": "candidates", "eventType": "UPDATED"}, "not-an-object"
    )
    response = await post(client, payload)

    assert response.status_code == 200, response.text
    assert response.json()["quarantined"] == 2
    found = await records(acme)
    assert [(r.state, r.known, r.reason) for r in found] == [
        ("received", True, None),
        ("quarantined", False, "unexpected_shape"),
        ("quarantined", False, "unexpected_shape"),
    ]
    assert "events[1].objectId" in found[1].detail
    assert "events[2] is not an object" in found[2].detail
    assert len(await arq_queue(acme.queue.redis)) == 1
    # Sent again, the malformed objects are not recorded twice either.
    again = await post(client, payload)
    assert [r["duplicate"] for r in again.json()["records"]] == [True, True, True]
    # Re-parsing (hirehook dead-letters retry) still finds the same problem.
    reparse = REGISTRY["cloudelements"].reparse
    assert reparse is not None
    assert reparse(found[1].payload, {}, {}).problems == (
        "events[1].objectId: missing, empty or not a string",
    )


async def test_an_authentic_body_of_unexpected_shape_is_recorded_not_refused(
    client: httpx.AsyncClient, acme: Services
) -> None:
    not_json = await post(client, b"{this is not json")
    no_events = await post(client, {"message": {"eventId": "x", "events": []}})
    unknown_type = await post(client, notification(event("c-9", "UNKNOWN")))

    assert [r.status_code for r in (not_json, no_events, unknown_type)] == [200, 200, 200]
    found = await records(acme)
    by_type = {r.event_type: r for r in found}
    assert by_type["cloudelements.notification"].state == "quarantined"
    assert {r.payload.get("unparsed") for r in found} >= {"{this is not json"}
    # An event type Cloud Elements calls UNKNOWN is stored, not dispatched, not quarantined.
    assert (by_type["candidates.unknown"].known, by_type["candidates.unknown"].state) == (
        False,
        "received",
    )
    assert await arq_queue(acme.queue.redis) == []


async def test_header_name_and_encoding_are_configurable_per_connection(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services,
        tenant="acme",
        source="cloudelements",
        secrets={"signature_keys": [OTHER_KEY, KEY]},
        options={"signature_header": "X-CE-Signature", "signature_encoding": "hex"},
    )
    body = orjson.dumps(notification(event("c-1")))
    hex_signature = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    accepted = await client.post(URL, content=body, headers={"X-CE-Signature": hex_signature})
    default_header = await post(client, body)

    assert accepted.status_code == 200, accepted.text
    assert default_header.status_code == 401


async def test_the_sample_sender_body_is_accepted(
    client: httpx.AsyncClient, acme: Services
) -> None:
    response = await post(client, sample(3, "sample-1"))
    assert response.status_code == 200
    assert len(response.json()["records"]) == 3


async def test_short_keys_and_unknown_options_are_refused_when_loaded(services: Services) -> None:
    async def load(secrets: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        spec = TenantSpec(
            slug="acme",
            name="Acme",
            connection=[
                ConnectionSpec(source="cloudelements", secrets=secrets, options=options or {})
            ],
        )
        await apply_tenants(
            TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher
        )

    with pytest.raises(ValueError, match="at least 32 characters") as short:
        # Cloud Elements' example key (docs/ats/cloudelements.md)
        await load({"signature_keys": ["asdfo08e$fd"]})
    assert "asdfo08e" not in str(short.value)
    with pytest.raises(ValueError, match="signature_keys"):
        await load({})
    with pytest.raises(ValueError, match="signature_encodingg"):
        await load({"signature_keys": [KEY]}, {"signature_encodingg": "hex"})
    await load({"signature_keys": [KEY]})


async def test_hirehook_send_cloudelements_against_the_demo_tenant(
    served: str, services: Services
) -> None:
    await apply_tenants(
        read_tenants_file(DEMO_TENANTS), engine=services.engine, cipher=services.cipher
    )
    runner = CliRunner()
    args = ["send", "cloudelements", "--url", served, "--events", "3"]
    sent = await asyncio.to_thread(runner.invoke, cli, [*args, "--event-id", "n-1"])
    # The server shares this process, so its log lines may be mixed into the output.
    assert sent.exit_code == 0, sent.output
    assert any(line.startswith("200 {") for line in sent.output.splitlines())
    assert len(await records(services)) == 3
    refused = await asyncio.to_thread(runner.invoke, cli, [*args, "--key", OTHER_KEY])
    assert refused.exit_code == 1
    assert any(line.startswith("401 {") for line in refused.output.splitlines())


async def test_bad_signatures_block_the_address_for_failures_only(
    services: Services, settings: Settings
) -> None:
    await add_connection(
        services, tenant="acme", source="cloudelements", secrets={"signature_keys": [KEY]}
    )
    strict = make_settings(
        str(settings.database_url),
        str(settings.redis_url),
        auth_failure_limit_per_address=3,
        auth_block_s=60,
    )
    body = orjson.dumps(notification(event("c-1")))
    async for client in run_app(create_app(strict)):
        statuses = [(await post(client, body, key=OTHER_KEY)).status_code for _ in range(4)]
        blocked = await post(client, body, key=OTHER_KEY)
        assert statuses == [401, 401, 401, 429]
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        # The address may be the ATS's shared egress: a good signature from it still passes.
        assert (await post(client, body)).status_code == 200
    assert len(await records(services)) == 1


TOKEN = "ce_" + "Vb3xQ9kM2rT7wN4pZ8sL1yH6" * 2


async def counted(services: Services) -> int:
    [row] = await rows(services, "SELECT count(*) AS n FROM record")
    return int(row.n)


@pytest.fixture
async def tokened(services: Services) -> Services:
    # [C] Cloud Elements makes event.notification.signature.key optional: an instance without one.
    await add_connection(
        services,
        tenant="tokened",
        source="cloudelements",
        secrets={"url_tokens": ["retired-" + TOKEN, TOKEN]},
        options={"auth": "url_token"},
    )
    return services


async def test_an_instance_without_a_signature_key_is_connected_by_a_url_token(
    client: httpx.AsyncClient, tokened: Services
) -> None:
    body = orjson.dumps(notification(event("c-1", updatedDate="2026-06-01T09:00:00.000Z")))
    url = f"/v1/cloud-elements/tokened/events/{TOKEN}"
    first = await client.post(url, content=body)
    repeat = await client.post(url, content=body)
    assert first.status_code == repeat.status_code == 200, first.text
    assert repeat.json()["records"][0]["duplicate"] is True
    assert [r.event_type for r in await records(tokened)] == ["candidates.updated"]

    # A wrong token, an unknown tenant, an unsigned notification on the plain URL, and a
    # signature instead of the token: all the same 401 as any other authentication failure.
    wrong = await client.post(f"/v1/cloud-elements/tokened/events/{TOKEN[:-1]}x", content=body)
    unknown = await client.post(f"/v1/cloud-elements/nobody/events/{TOKEN}", content=body)
    unsigned = await client.post("/v1/cloud-elements/tokened/events", content=body)
    signed = await post(client, body, url="/v1/cloud-elements/tokened/events")
    refusals = (wrong, unknown, unsigned, signed)
    assert [r.status_code for r in refusals] == [401] * 4
    assert all(r.json() == wrong.json() for r in refusals)
    assert TOKEN not in wrong.text
    assert await counted(tokened) == 1


async def test_a_signing_connection_refuses_the_token_url(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = orjson.dumps(notification(event("c-1")))
    # Even its own signature key as the token: a signing connection takes no token.
    for token in (TOKEN, KEY.replace("-", "_")):
        response = await client.post(f"/v1/cloud-elements/acme/events/{token}", content=body)
        assert response.status_code == 401
    assert await counted(acme) == 0


async def test_url_tokens_are_checked_when_loaded_and_stored_encrypted(
    services: Services,
) -> None:
    async def load(secrets: dict[str, Any], options: dict[str, Any]) -> None:
        spec = TenantSpec(
            slug="acme",
            name="Acme",
            connection=[ConnectionSpec(source="cloudelements", secrets=secrets, options=options)],
        )
        await apply_tenants(
            TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher
        )

    token_auth = {"auth": "url_token"}
    with pytest.raises(ValueError, match=r"url_tokens\[0\] must be at least 32") as short:
        await load({"url_tokens": ["short-token"]}, token_auth)
    assert "short-token" not in str(short.value)
    with pytest.raises(ValueError, match=r"url_tokens\[0\]: use only"):
        await load({"url_tokens": ["a/b" + TOKEN]}, token_auth)
    with pytest.raises(ValueError, match="url_tokens: at least one"):
        await load({"signature_keys": [KEY]}, token_auth)
    with pytest.raises(ValueError, match='auth = "url_token"'):
        await load({}, {})
    await load({"url_tokens": [TOKEN]}, token_auth)
    [row] = await rows(services, "SELECT options, secrets FROM connection")
    assert TOKEN.encode() not in bytes(row.secrets)
    assert services.cipher.decrypt_json(row.secrets) == {"url_tokens": [TOKEN]}
