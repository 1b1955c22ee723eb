"""HMAC-signed webhooks (the ``hmac`` source): each preset's ATS signs as its docs say, the
event is recorded once and delivered as the generic event; bad credentials are one 401."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from typer.testing import CliRunner

from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
)
from app.cli import cli
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from app.sources import REGISTRY
from app.verifiers import VerificationError
from app.verifiers import hmac as signatures
from tests.support.app import run_app
from tests.support.fake_ats import FakeATS
from tests.support.workers import VENDOR_SECRET, fast_settings, rows, run_worker

SECRET = "hmac-signing-secret-for-the-tests-0001"
OLD_SECRET = "hmac-signing-secret-being-rotated-0000"
WRONG = "a-signing-secret-nobody-configured-00000"


# Independent signers, written from each ATS's description (docs/ats/hmac-signers.md), not with
# the source's own sender.
def ashby_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """[C] Ashby: ``Ashby-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Ashby-Signature": f"sha256={digest}", "content-type": "application/json"}


def greenhouse_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """[I] Greenhouse: ``Signature: sha256 <hex HMAC-SHA256(secret key, raw body)>``, and the
    event id in ``Greenhouse-Event-ID``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Signature": f"sha256 {digest}",
        "Greenhouse-Event-ID": "gh-evt-1",
        "content-type": "application/json",
    }


def ashby_body() -> bytes:
    return orjson.dumps({"action": "candidateHire", "data": {"candidate": {"id": "c-1"}}})


def greenhouse_body() -> bytes:
    # Greenhouse signs the body with its unicode escapes: the raw bytes, not a re-encoding.
    return b'{"action":"hire_candidate","payload":{"application":{"id":7,"name":"Zo\\u00eb"}}}'


PRESETS: dict[str, tuple[Callable[[], bytes], Callable[..., dict[str, str]]]] = {
    "ashby": (ashby_body, ashby_headers),
    "greenhouse": (greenhouse_body, greenhouse_headers),
}
EVENTS = {"ashby": "candidateHire", "greenhouse": "hire_candidate"}


async def connect(
    services: Services,
    tenant: str,
    options: dict[str, Any],
    *,
    secrets: list[str] | None = None,
    destination: str | None = None,
) -> None:
    spec = TenantSpec(
        slug=tenant,
        name=tenant.title(),
        connection=[
            ConnectionSpec(
                source="hmac",
                secrets={"signing_secrets": secrets or [OLD_SECRET, SECRET]},
                options=options,
            )
        ],
        destination=(
            DestinationSpec(url=destination, secret=VENDOR_SECRET) if destination else None
        ),
    )
    await apply_tenants(TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher)
    services.connections.invalidate()


async def records(services: Services) -> list[Any]:
    return await rows(
        services,
        "SELECT r.id, r.event_type, r.known, r.state, r.dedupe_key, r.payload, d.reason "
        "FROM record r LEFT JOIN dead_letter d ON d.record_id = r.id ORDER BY r.received_at",
    )


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_each_preset_is_accepted_recorded_once_and_delivered(
    preset: str, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    await connect(services, preset, {"preset": preset}, destination=fake_ats.vendor_url)
    make_body, sign = PRESETS[preset]
    body = make_body()
    url = f"/v1/hmac/{preset}/events"
    quick = fast_settings(settings)
    async for client in _client(quick):
        first = await client.post(url, content=body, headers=sign(body))
        repeat = await client.post(url, content=body, headers=sign(body))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "accepted",
        "record_id": first.headers["hirehook-record-id"],
        "event": EVENTS[preset],
    }
    assert repeat.status_code == 200 and repeat.headers["hirehook-duplicate"] == "true"
    assert repeat.json() == first.json()
    [record] = await records(services)
    assert (record.event_type, record.known, record.reason) == (EVENTS[preset], True, None)
    # Greenhouse names its event id; Ashby documents none, so its body's digest is the key.
    expected_key = "id:gh-evt-1" if preset == "greenhouse" else "sha256:"
    assert record.dedupe_key.startswith(expected_key)

    await run_worker(quick)
    [delivery] = fake_ats.deliveries()
    event = Webhook(VENDOR_SECRET).verify(delivery.body.decode(), delivery.headers)
    assert isinstance(event, dict)
    assert event["type"] == EVENTS[preset]
    assert event["data"]["source"] == "hmac"
    assert event["data"]["event"] == EVENTS[preset]
    assert event["data"]["object"] == orjson.loads(body)


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in run_app(create_app(settings)):
        yield client


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_wrong_missing_and_unknown_are_the_same_401(
    preset: str, client: httpx.AsyncClient, services: Services
) -> None:
    await connect(services, preset, {"preset": preset})
    make_body, sign = PRESETS[preset]
    body = make_body()
    url = f"/v1/hmac/{preset}/events"
    good = sign(body)
    header = "Ashby-Signature" if preset == "ashby" else "Signature"
    missing = {k: v for k, v in good.items() if k != header}
    refusals = [
        await client.post(url, content=body, headers=sign(body, WRONG)),
        await client.post(url, content=body, headers=missing),
        await client.post(url, content=body + b" ", headers=good),
        await client.post("/v1/hmac/nobody/events", content=body, headers=good),
    ]
    assert [r.status_code for r in refusals] == [401] * 4
    assert all(r.json() == refusals[0].json() for r in refusals)
    assert all(SECRET not in r.text for r in refusals)
    assert await records(services) == []
    # The secret being rotated out still verifies.
    accepted = await client.post(url, content=body, headers=sign(body, OLD_SECRET))
    assert accepted.status_code == 200, accepted.text


TIMESTAMPED = {
    "signature_header": "X-Signature",
    "algorithm": "sha512",
    "encoding": "base64",
    "prefix": "v1=",
    "timestamp_header": "X-Timestamp",
    "signed": "timestamp.body",
    "tolerance_s": 300,
    "event_header": "X-Event",
    "id_path": "meta.id",
}


def timestamped(body: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha512).digest()
    return {
        "X-Signature": "v1=" + base64.b64encode(digest).decode(),
        "X-Timestamp": str(stamp),
        "X-Event": "offer.accepted",
    }


async def test_a_configured_timestamp_is_signed_and_must_be_fresh(
    client: httpx.AsyncClient, services: Services
) -> None:
    await connect(services, "custom", TIMESTAMPED)
    body = orjson.dumps({"meta": {"id": "m-9"}, "offer": {"id": 3}})
    url = "/v1/hmac/custom/events"
    now = int(time.time())
    stale = await client.post(url, content=body, headers=timestamped(body, now - 3600))
    future = await client.post(url, content=body, headers=timestamped(body, now + 3600))
    unstamped = {k: v for k, v in timestamped(body, now).items() if k != "X-Timestamp"}
    missing = await client.post(url, content=body, headers=unstamped)
    # The timestamp is signed: moving it breaks the signature.
    moved = {**timestamped(body, now), "X-Timestamp": str(now - 1)}
    shifted = await client.post(url, content=body, headers=moved)
    assert [r.status_code for r in (stale, future, missing, shifted)] == [401] * 4
    fresh = await client.post(url, content=body, headers=timestamped(body, now))
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["event"] == "offer.accepted"
    [record] = await records(services)
    assert record.dedupe_key == "id:m-9" and record.event_type == "offer.accepted"


async def test_an_authentic_event_without_its_name_is_recorded_and_quarantined(
    client: httpx.AsyncClient, services: Services
) -> None:
    await connect(services, "ashby", {"preset": "ashby"})
    url = "/v1/hmac/ashby/events"
    nameless = orjson.dumps({"data": {"candidate": {"id": "c-1"}}})
    not_json = b"action=candidateHire"
    answers = [
        await client.post(url, content=body, headers=ashby_headers(body))
        for body in (nameless, not_json)
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert [a.json()["event"] for a in answers] == ["unknown", "unknown"]
    found = await records(services)
    assert [(r.event_type, r.known, r.state, r.reason) for r in found] == [
        ("unknown", False, "quarantined", "unexpected_shape")
    ] * 2


async def test_configuration_errors_name_the_setting_never_the_value(
    services: Services,
) -> None:
    async def load(options: dict[str, Any], secrets: list[str]) -> None:
        await connect(services, "acme", options, secrets=secrets)

    short = "short-secret-" + uuid.uuid4().hex[:8]
    with pytest.raises(ValueError, match=r"signing_secrets\[1\]: at least 32") as caught:
        await load({"preset": "ashby"}, [SECRET, short])
    assert short not in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(ValueError, match=r"options\W+algorithm"):
        await load({"preset": "ashby", "algorithm": "md5"}, [SECRET])
    with pytest.raises(ValueError, match=r"options\W+signature_header"):
        await load({"event_path": "action"}, [SECRET])
    with pytest.raises(ValueError, match=r"options\W+timestamp_header"):
        await load({"preset": "ashby", "signed": "timestamp.body"}, [SECRET])
    with pytest.raises(ValueError, match=r"options\W+preset"):
        await load({"preset": "lever"}, [SECRET])
    with pytest.raises(ValueError, match=r"options\W+unknown_setting") as extra:
        await load({"preset": "ashby", "unknown_setting": SECRET}, [SECRET])
    assert SECRET not in str(extra.value)
    await load({"preset": "greenhouse"}, [SECRET])


@pytest.mark.parametrize("preset", sorted(PRESETS))
async def test_hirehook_send_hmac_reaches_a_running_app(
    preset: str, served: str, services: Services
) -> None:
    await connect(services, "acme", {"preset": preset})
    runner = CliRunner()
    args = ["send", "hmac", "--preset", preset, "--url", served, "--tenant", "acme"]
    sent = await asyncio.to_thread(runner.invoke, cli, [*args, "--secret", SECRET])
    # The server shares this process, so its log lines may be mixed into the output.
    assert sent.exit_code == 0, sent.output
    assert any(line.startswith("200 {") for line in sent.output.splitlines())
    assert [r.known for r in await records(services)] == [True]
    refused = await asyncio.to_thread(runner.invoke, cli, [*args, "--secret", WRONG])
    assert refused.exit_code == 1
    assert any(line.startswith("401 {") for line in refused.output.splitlines())


@pytest.mark.parametrize(
    ("algorithm", "encoding", "digest"),
    [
        ("sha1", "hex", lambda k, m: hmac.new(k, m, hashlib.sha1).hexdigest().upper()),
        (
            "sha512",
            "base64",
            lambda k, m: base64.b64encode(hmac.new(k, m, hashlib.sha512).digest()).decode(),
        ),
    ],
)
def test_the_verifier_takes_each_algorithm_and_encoding(
    algorithm: Any, encoding: Any, digest: Callable[[bytes, bytes], str]
) -> None:
    body = b'{"action":"x"}'
    presented = "sha=" + digest(SECRET.encode(), body)
    signatures.verify(
        presented,
        [body],
        [b"other-key", SECRET.encode()],
        now=time.time(),
        algorithm=algorithm,
        encoding=encoding,
        prefix="sha=",
    )
    for wrong_body, wrong_prefix in ((body + b" ", "sha="), (body, "")):
        with pytest.raises(VerificationError):
            signatures.verify(
                presented,
                [wrong_body],
                [SECRET.encode()],
                now=time.time(),
                algorithm=algorithm,
                encoding=encoding,
                prefix=wrong_prefix,
            )
    # A timestamp in milliseconds is read as such.
    stamp_ms = str(int(time.time() * 1000))
    signatures.check_timestamp(stamp_ms, now=time.time(), tolerance_s=60)


def test_a_quarantined_event_is_released_once_the_connection_names_its_header() -> None:
    reparse = REGISTRY["hmac"].reparse
    assert reparse is not None
    payload = {"data": {"id": 1}}
    stored = {"hirehook-hmac-event": "offer.created"}
    before = reparse(payload, {}, {"preset": "ashby"})
    after = reparse(payload, stored, {"preset": "ashby", "event_header": "X-Event"})
    assert (before.known, before.problems) == (False, ("no event name at body action",))
    assert (after.event_type, after.known, after.problems) == ("offer.created", True, ())


async def test_one_tenants_secret_never_records_under_another(
    client: httpx.AsyncClient, services: Services
) -> None:
    await connect(services, "alpha", {"preset": "ashby"}, secrets=[SECRET])
    await connect(services, "beta", {"preset": "ashby"}, secrets=[WRONG])
    body = ashby_body()
    crossed = await client.post("/v1/hmac/beta/events", content=body, headers=ashby_headers(body))
    own = await client.post("/v1/hmac/alpha/events", content=body, headers=ashby_headers(body))
    assert (crossed.status_code, own.status_code) == (401, 200)
    [record] = await rows(
        services, "SELECT t.slug FROM record r JOIN tenant t ON t.id = r.tenant_id"
    )
    assert record.slug == "alpha"
